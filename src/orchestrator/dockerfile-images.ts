// What a Dockerfile build would read, checked before it runs. Every image it names (each FROM,
// COPY --from and ADD --from, RUN --mount ...from=, the Dockerfile's ONBUILD triggers and those of
// its base images), with ARG and ENV values substituted as the builder substitutes them (berth
// passes no build args), is resolved through the engine as the builder resolves it (a name with
// tag or digest, a full or short image id) and refused when it names or resolves to another app's
// release image, an untagged image (a build's intermediate layer, a pruned release), or cannot be
// known before the build (a variable the Dockerfile does not set, a short id the engine lacks).
// ADD with a URL source is refused: the Docker daemon would fetch it from the server's own network.
import { UserError } from '../errors.ts';
import type { Engine, ImageIdentity } from './engine.ts';
import { isOwnImage, otherAppOf } from './image-owner.ts';

/** An image a Dockerfile reads (or, `kind: 'url'`, a URL its ADD makes the server fetch), as it names it after substitution. */
export interface ImageReference {
  kind: 'image' | 'url';
  /** The Dockerfile's line the instruction starts on (1-based); 0 for a base image's ONBUILD trigger. */
  line: number;
  /** `FROM`, `COPY --from`, `RUN --mount from`. */
  via: string;
  /** After ARG and ENV substitution; undefined when it cannot be known before the build. */
  ref: string | undefined;
  /** As written. */
  written: string;
  /** It is FROM: its ONBUILD triggers run in this build. */
  base: boolean;
}

interface Instruction {
  line: number;
  keyword: string;
  rest: string;
}

/** Instructions of a Dockerfile, as the builder's parser splits them (directives, escapes, continuations, comments). */
export function dockerfileInstructions(text: string): Instruction[] {
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  let escape = '\\';
  let i = 0;
  // Parser directives: `# key=value` lines at the very top.
  for (; i < lines.length; i++) {
    const m = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$/.exec(lines[i]!);
    if (!m) break;
    if (m[1]!.toLowerCase() === 'escape') escape = m[2] === '`' ? '`' : '\\';
  }
  const continues = new RegExp(`${escape === '`' ? '`' : '\\\\'}[ \\t]*$`);
  const out: Instruction[] = [];
  for (; i < lines.length; i++) {
    const first = lines[i]!;
    if (/^\s*#/.test(first) || /^\s*$/.test(first)) continue;
    const start = i + 1;
    let joined = first;
    while (continues.test(joined) && i + 1 < lines.length) {
      joined = joined.replace(continues, '');
      const next = lines[++i]!;
      // Comment and empty lines inside a continued instruction are left out.
      if (/^\s*#/.test(next) || /^\s*$/.test(next)) {
        joined += escape;
        continue;
      }
      joined += next;
    }
    joined = joined.replace(continues, '');
    const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(joined);
    if (m) out.push({ line: start, keyword: m[1]!.toUpperCase(), rest: (m[2] ?? '').trim() });
  }
  return out;
}

type Vars = Map<string, string | undefined>;

/**
 * Substitutes $NAME, ${NAME}, ${NAME:-word} and ${NAME:+word}; undefined when a variable has no
 * value known before the build (not set by the Dockerfile, or set from something unknown).
 */
export function substitute(word: string, vars: Vars, unsetIsEmpty: boolean): string | undefined {
  let unknown = false;
  const value = (name: string): string | undefined => {
    if (vars.has(name)) {
      const v = vars.get(name);
      if (v === undefined) unknown = true;
      return v;
    }
    if (!unsetIsEmpty) unknown = true;
    return undefined;
  };
  const result = word.replace(/\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$\{[^}]*\}?/g, (all, braced?: string, op?: string, alt?: string, bare?: string) => {
    if (all === '\\$') return '$';
    const name = braced ?? bare;
    if (!name) {
      unknown = true;
      return '';
    }
    if (!op) return value(name) ?? '';
    const set = vars.has(name) && vars.get(name) !== undefined && (op.startsWith(':') ? vars.get(name) !== '' : true);
    if (vars.has(name) && vars.get(name) === undefined) unknown = true;
    if (!vars.has(name) && !unsetIsEmpty) unknown = true;
    const altValue = substitute(alt ?? '', vars, unsetIsEmpty);
    if (altValue === undefined) unknown = true;
    if (op.endsWith('-')) return set ? vars.get(name)! : (altValue ?? '');
    return set ? (altValue ?? '') : '';
  });
  // A `$` left over is a form not handled here: not known before the build.
  return unknown || /\$/.test(result.replace(/\\\$/g, '')) ? undefined : result;
}

/** NAME=value pairs of ARG and ENV (values may be quoted), and ENV's older `NAME value` form. */
function assignments(rest: string, keyword: 'ARG' | 'ENV'): Array<[string, string | undefined]> {
  const words = shellWords(rest);
  if (keyword === 'ENV' && words.length > 0 && !words[0]!.includes('=')) {
    const space = rest.search(/\s/);
    return [[words[0]!, space < 0 ? '' : unquote(rest.slice(space).trim())]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    return eq < 0 ? [w, undefined] : [w.slice(0, eq), unquote(w.slice(eq + 1))];
  });
}

function shellWords(text: string): string[] {
  return [...text.matchAll(/(?:[^\s"']+|"(?:\\.|[^"\\])*"|'[^']*')+/g)].map((m) => m[0]);
}

function unquote(text: string): string {
  return text.replace(/"((?:\\.|[^"\\])*)"|'([^']*)'/g, (_all, dq?: string, sq?: string) => (dq !== undefined ? dq.replace(/\\(.)/g, '$1') : sq!));
}

/** The sources of ADD (every argument but the destination), in its shell or JSON form. */
function addSources(args: string): string[] {
  if (args.startsWith('[')) {
    try {
      const list = JSON.parse(args) as unknown;
      if (Array.isArray(list)) return list.slice(0, -1).map(String);
    } catch {
      // Not JSON: the builder reads it as the shell form too.
    }
  }
  return shellWords(args).slice(0, -1).map(unquote);
}

/** The flags (`--name=value`) at the start of an instruction's arguments, and what follows them. */
function flagsOf(rest: string): { flags: Array<[string, string]>; after: string } {
  const flags: Array<[string, string]> = [];
  let after = rest;
  for (;;) {
    const m = /^--([A-Za-z-]+)(?:=((?:"[^"]*"|'[^']*'|\S)*))?\s*/.exec(after);
    if (!m) break;
    flags.push([m[1]!.toLowerCase(), unquote(m[2] ?? '')]);
    after = after.slice(m[0].length);
  }
  return { flags, after };
}

/**
 * The images a Dockerfile reads, stage by stage (a stage's own name or index is not an image).
 * `onBuild` gives a base image's ONBUILD triggers, which run right after its FROM.
 */
export async function imageReferences(text: string, onBuild: (ref: string) => Promise<string[]> = async () => []): Promise<ImageReference[]> {
  const refs: ImageReference[] = [];
  const globals: Vars = new Map();
  const stages: string[] = [];
  let stage: Vars | undefined;
  const visit = async (ins: Instruction, nested: number): Promise<void> => {
    const { keyword, rest, line } = ins;
    if (keyword === 'ONBUILD') {
      // A trigger of this Dockerfile runs in builds FROM its image: refused as if it ran here.
      const inner = /^([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(rest);
      if (inner && nested < 2) await visit({ line, keyword: inner[1]!.toUpperCase(), rest: (inner[2] ?? '').trim() }, nested + 1);
      return;
    }
    if (keyword === 'ARG') {
      for (const [name, value] of assignments(rest, 'ARG')) {
        const target = stage ?? globals;
        const own = value === undefined ? undefined : substitute(value, target, stage === undefined);
        // `ARG NAME` in a stage takes the global default; without one its value is unknown here.
        target.set(name, value === undefined ? (stage ? globals.get(name) : undefined) : own);
      }
      return;
    }
    if (keyword === 'ENV' && stage) {
      for (const [name, value] of assignments(rest, 'ENV')) stage.set(name, value === undefined ? undefined : substitute(value, stage, false));
      return;
    }
    if (keyword === 'FROM') {
      const { after } = flagsOf(rest);
      const words = shellWords(after);
      const written = words[0] ?? '';
      const ref = substitute(written, globals, true);
      const internal = ref !== undefined && (ref.toLowerCase() === 'scratch' || stages.includes(ref.toLowerCase()));
      if (!internal) refs.push({ kind: 'image', line, via: 'FROM', ref, written, base: true });
      stages.push(words[1]?.toLowerCase() === 'as' && words[2] ? words[2].toLowerCase() : `\0${stages.length}`);
      stage = new Map();
      if (!internal && ref !== undefined) {
        for (const trigger of await onBuild(ref)) {
          const m = /^([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(trigger.trim());
          if (m) await visit({ line: 0, keyword: m[1]!.toUpperCase(), rest: (m[2] ?? '').trim() }, nested + 1);
        }
      }
      return;
    }
    if (keyword === 'COPY' || keyword === 'ADD') {
      for (const [name, value] of flagsOf(rest).flags) {
        if (name !== 'from') continue;
        const ref = substitute(value, stage ?? globals, false);
        const current = stages.length - 1;
        const earlier = stages.slice(0, Math.max(current, 0));
        const internal = ref !== undefined && (earlier.includes(ref.toLowerCase()) || (/^\d+$/.test(ref) && Number(ref) < current));
        if (!internal) refs.push({ kind: 'image', line, via: `${keyword} --from`, ref, written: value, base: false });
      }
      if (keyword === 'ADD') {
        // ADD fetches a URL source from the Docker daemon, on the server's own network.
        for (const source of addSources(flagsOf(rest).after)) {
          const url = substitute(source, stage ?? globals, false);
          if (url === undefined || /^[a-z][a-z0-9+.-]*:\/\/|^git@/i.test(url)) refs.push({ kind: 'url', line, via: 'ADD', ref: url, written: source, base: false });
        }
      }
      return;
    }
    if (keyword === 'RUN') {
      for (const [name, value] of flagsOf(rest).flags) {
        if (name !== 'mount') continue;
        for (const part of value.split(',')) {
          const [key, v] = part.split('=', 2) as [string, string | undefined];
          if (key.trim().toLowerCase() !== 'from' || v === undefined) continue;
          const ref = substitute(v, stage ?? globals, false);
          const current = stages.length - 1;
          const internal = ref !== undefined && (stages.slice(0, Math.max(current, 0)).includes(ref.toLowerCase()) || (/^\d+$/.test(ref) && Number(ref) < current));
          if (!internal) refs.push({ kind: 'image', line, via: 'RUN --mount from', ref, written: v, base: false });
        }
      }
    }
  };
  for (const ins of dockerfileInstructions(text)) await visit(ins, 0);
  return refs;
}

/**
 * Refuses, with a UserError naming the line, a Dockerfile of `app` that reads an image of another
 * app (by tag, full or short id, or digest), an untagged image, or one that cannot be known before
 * the build. A base image the engine lacks is pulled first (the build would pull it), so that its
 * ONBUILD triggers are checked too.
 */
export async function checkDockerfileImages(text: string, engine: Engine, app: string, onPull: (ref: string) => void = () => {}): Promise<void> {
  const identities = new Map<string, ImageIdentity | undefined>();
  const identify = async (ref: string, pull: boolean): Promise<ImageIdentity | undefined> => {
    if (identities.has(ref) && (identities.get(ref) || !pull)) return identities.get(ref);
    let identity = await engine.imageIdentity(ref);
    // Only a name a registry can serve is pulled; a hex word the engine lacks could later match a new image's id.
    if (!identity && pull && !otherAppOf(ref, undefined, engine.instance, app) && !/^(sha256:)?[0-9a-f]{1,64}$/i.test(ref)) {
      onPull(ref);
      try {
        await engine.pull(ref);
      } catch (e) {
        throw new UserError('dockerfile_image_missing', `the Dockerfile's base image ${ref} is not on the Docker engine and could not be pulled: ${(e as Error).message}`);
      }
      identity = await engine.imageIdentity(ref);
    }
    identities.set(ref, identity);
    return identity;
  };
  const refs = await imageReferences(text, async (ref) => (await identify(ref, true))?.onBuild ?? []);
  for (const r of refs) {
    const where = r.line ? `Dockerfile line ${r.line}` : `an ONBUILD trigger of a base image`;
    const refuse = (why: string): never => {
      throw new UserError('dockerfile_image_refused', `${where} (${r.via} ${r.written}): ${why}`, {
        hint: "a Dockerfile may build on public images, images the admin has on the engine, and this app's own release images; never on another app's",
      });
    };
    if (r.kind === 'url') {
      if (r.ref === undefined) refuse('the source cannot be known before the build (a variable the Dockerfile does not set), and ADD fetches URLs from the server itself');
      refuse('ADD fetches a URL from the server itself (its own network, following redirects), which a Dockerfile build may not do; download it in a RUN step (curl, wget) instead');
    }
    if (r.ref === undefined) refuse('the image cannot be known before the build (a variable the Dockerfile does not set); name the image, or set the variable with ARG NAME=value');
    const ref = r.ref!;
    if (ref === '') refuse('no image named');
    const identity = await identify(ref, r.base);
    const other = otherAppOf(ref, identity, engine.instance, app);
    if (other) refuse(`${ref} is a release image of another app (${other})`);
    if (identity && identity.repoTags.length === 0 && !isOwnImage(identity, engine.instance, app)) refuse(`${ref} is an untagged image (a build's intermediate layer or a removed release), which a Dockerfile may not name`);
    if (!identity && /^(sha256:)?[0-9a-f]{1,64}$/i.test(ref)) refuse(`${ref} looks like an image id the engine does not have`);
  }
}
