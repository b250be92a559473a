// buildpacks:add, buildpacks:set, buildpacks:remove, buildpacks:clear, buildpacks:list,
// buildpacks:set-stack: which buildpacks (and stack image) an app's builds use.
// buildpacks:update, buildpacks:update-all: fetch the kept copies of buildpacks anew.
// buildpacks:allow-stack, buildpacks:disallow-stack, buildpacks:allowed-stacks: the images keys
// limited to apps may build on or deploy.
import { UserError } from '../../errors.ts';
import { checkImageReference } from '../../image-reference.ts';
import { log } from '../../log.ts';
import { BuildpackFetcher, buildpackName, parseBuildpackUrl } from '../../orchestrator/buildpack-fetcher.ts';
import type { AppRecord } from '../../state/app-store.ts';
import { callerName, defineCommand, isScoped, requireDaemon, type Command, type CommandContext } from '../command.ts';

const ORDER_HELP =
  'A build uses, in order of precedence: the BUILDPACK_URL config var, the buildpacks set here, the .buildpacks file of the repository, else the first of the default list (--buildpacks) that detects the app.\nA URL is a git URL (https://host/repo.git, optionally #ref), heroku/NAME (the official buildpack, optionally #ref), a tarball URL (.tgz, .tar.gz, .tar), or (admin only, never in BUILDPACK_URL or .buildpacks) a file:// URL or an absolute path on the server.\nA buildpack is fetched once per URL#ref and kept on the server; buildpacks:update APP (or buildpacks:update-all) fetches it anew.\nBuilds set STACK from the stack image (its STACK or CNB_STACK_ID, or its io.buildpacks.stack.id label); the STACK config var of the app overrides it.';

const UPDATE_HELP =
  'Fetches anew every buildpack the app names (BUILDPACK_URL, buildpacks:set) and every one its last build used (.buildpacks, or the default list). A buildpack that cannot be fetched keeps its last good copy, and the next builds use that.';

export const buildpackCommands: Command[] = [
  defineCommand({
    name: 'buildpacks:add',
    args: ['APP', 'URL'],
    flags: { index: 'N' },
    summary: "add a buildpack to the app's list (at position N, counted from 1; default: last)",
    help: ORDER_HELP,
    scope: 'app',
    async run(ctx, { app, args: [rawUrl], flags }) {
      const url = checkUrl(ctx, rawUrl);
      await update(ctx, app, (a) => {
        if (a.buildpacks.includes(url)) throw new UserError('buildpack_exists', `${app} already uses ${url}`);
        const at = flags.index === undefined ? a.buildpacks.length : index(flags.index, a.buildpacks.length + 1);
        a.buildpacks.splice(at, 0, url);
      });
    },
  }),
  defineCommand({
    name: 'buildpacks:set',
    args: ['APP', 'URL'],
    flags: { index: 'N' },
    summary: 'set the buildpack at position N (default 1), or the only one',
    help: ORDER_HELP,
    scope: 'app',
    async run(ctx, { app, args: [rawUrl], flags }) {
      const url = checkUrl(ctx, rawUrl);
      await update(ctx, app, (a) => {
        const at = flags.index === undefined ? 0 : index(flags.index, a.buildpacks.length + 1);
        if (at === a.buildpacks.length) a.buildpacks.push(url);
        else a.buildpacks[at] = url;
      });
    },
  }),
  defineCommand({
    name: 'buildpacks:remove',
    args: ['APP', 'URL'],
    summary: "remove a buildpack from the app's list",
    scope: 'app',
    async run(ctx, { app, args: [url] }) {
      await update(ctx, app, (a) => {
        const i = a.buildpacks.indexOf(url);
        if (i < 0) throw new UserError('buildpack_not_set', `${app} does not use ${url}`, { hint: `\`buildpacks:list ${app}\` shows its buildpacks` });
        a.buildpacks.splice(i, 1);
      });
    },
  }),
  defineCommand({
    name: 'buildpacks:clear',
    args: ['APP'],
    summary: "clear the app's buildpacks (back to .buildpacks or detection)",
    scope: 'app',
    async run(ctx, { app }) {
      await update(ctx, app, (a) => void (a.buildpacks = []));
    },
  }),
  defineCommand({
    name: 'buildpacks:list',
    args: ['APP'],
    summary: "list the app's buildpacks and its stack image",
    help: ORDER_HELP,
    scope: 'app',
    async run(ctx, { app }) {
      show(ctx, ctx.state.apps.require(app));
    },
  }),
  defineCommand({
    name: 'buildpacks:set-stack',
    args: ['APP', '[IMAGE]'],
    summary: "set the stack image of the app's buildpack builds (without IMAGE: back to --stack-image)",
    help: "A key limited to apps may choose only --stack-image and the images an admin allows (buildpacks:allow-stack), never another app's release image.",
    scope: 'app',
    async run(ctx, { app, args: [image] }) {
      if (image !== undefined) {
        checkImageReference(image);
        if (isScoped(ctx)) {
          const refusal = await requireDaemon(ctx).releases.stackRefusal(app, image, allowedStacks(ctx));
          if (refusal) {
            log.warn('command_refused', { app, command: 'buildpacks:set-stack', image, by: callerName(ctx), reason: 'stack_not_allowed' });
            throw new UserError('forbidden', `buildpacks:set-stack ${app} refused: ${refusal}`, { hint: 'an admin may set it, or allow it for every app with buildpacks:allow-stack IMAGE' });
          }
        }
      }
      await update(ctx, app, (a) => void (a.stack = image));
    },
  }),
  defineCommand({
    name: 'buildpacks:allow-stack',
    args: ['IMAGE'],
    summary: 'allow every app (keys limited to apps included) to build on IMAGE or deploy it with git:from-image',
    scope: 'admin',
    async run(ctx, { args: [image] }) {
      checkImageReference(image);
      const added = await ctx.state.allowedStacks.add(image);
      log.info('stack_allowed', { image, by: callerName(ctx) });
      ctx.out.line(added ? `${image} is allowed for every app` : `${image} was already allowed`);
    },
  }),
  defineCommand({
    name: 'buildpacks:disallow-stack',
    args: ['IMAGE'],
    summary: 'take IMAGE off the images every app may use (apps already on it keep it until changed)',
    scope: 'admin',
    async run(ctx, { args: [image] }) {
      if (!(await ctx.state.allowedStacks.remove(image))) {
        throw new UserError('stack_not_allowed', `${image} is not an allowed image`, { hint: '`buildpacks:allowed-stacks` lists them' });
      }
      log.info('stack_disallowed', { image, by: callerName(ctx) });
      ctx.out.line(`${image} is no longer allowed for every app`);
    },
  }),
  defineCommand({
    name: 'buildpacks:allowed-stacks',
    args: [],
    summary: 'list the images every app may build on or deploy (--stack-image and buildpacks:allow-stack)',
    scope: 'any',
    async run(ctx) {
      ctx.out.line(`${ctx.state.config.stackImage} (--stack-image)`);
      for (const image of ctx.state.allowedStacks.list()) ctx.out.line(image);
    },
  }),
  defineCommand({
    name: 'buildpacks:update',
    args: ['APP'],
    summary: "fetch the app's buildpacks anew (builds otherwise use the copies kept on the server)",
    help: UPDATE_HELP,
    scope: 'app',
    async run(ctx, { app }) {
      const record = ctx.state.apps.require(app);
      const fetcher = new BuildpackFetcher(ctx.state.paths.buildpacks, { policy: { allowHosts: ctx.state.config.fetchAllowHosts } });
      const named = [record.config.BUILDPACK_URL?.trim() ?? '', ...record.buildpacks].filter((u) => u);
      const urls = [...new Set([...named, ...(await fetcher.remembered(app))])];
      if (urls.length === 0) {
        ctx.out.line(`${app} has not been built with buildpacks yet: its first build fetches them`);
        return;
      }
      return refresh(ctx, fetcher, `Updating the buildpacks of ${app}`, urls);
    },
  }),
  defineCommand({
    name: 'buildpacks:update-all',
    args: [],
    summary: 'fetch anew every buildpack kept on the server',
    help: 'A buildpack that cannot be fetched keeps its last good copy, and builds use that.',
    scope: 'admin',
    async run(ctx) {
      const fetcher = new BuildpackFetcher(ctx.state.paths.buildpacks, { policy: { allowHosts: ctx.state.config.fetchAllowHosts } });
      const urls = await fetcher.keptUrls();
      if (urls.length === 0) {
        ctx.out.line('no buildpack is kept on this server yet: builds fetch them');
        return;
      }
      return refresh(ctx, fetcher, 'Updating every buildpack kept on this server', urls);
    },
  }),
];

// One line per buildpack; the exit status is 1 when one could not be fetched and had no copy.
async function refresh(ctx: CommandContext, fetcher: BuildpackFetcher, title: string, urls: readonly string[]): Promise<number> {
  ctx.out.step(title);
  let failed = 0;
  for (const url of urls) {
    const name = buildpackName(url);
    if (parseBuildpackUrl(url).kind === 'dir') {
      ctx.out.detail(`${name}: a folder on the server, used as it is (${url})`);
      continue;
    }
    try {
      const got = await fetcher.update(url);
      if (got.failure) {
        const when = got.fetchedAt ? got.fetchedAt.toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : 'earlier';
        ctx.out.detail(`${name}: could not fetch ${url} (${got.failure}); builds keep using the last good copy, fetched ${when}`);
      } else ctx.out.detail(`${name}: fetched ${url}`);
    } catch (e) {
      failed++;
      ctx.out.error(`${name}: ${(e as Error).message}`);
    }
  }
  log.info('buildpacks_updated', { urls, failed, by: callerName(ctx) });
  return failed ? 1 : 0;
}

async function update(ctx: CommandContext, app: string, change: (a: AppRecord) => void): Promise<void> {
  const record = await ctx.state.apps.update(app, change);
  log.info('buildpacks_changed', { app, buildpacks: record.buildpacks, stack: record.stack, by: callerName(ctx) });
  show(ctx, record);
  ctx.out.detail('the next push builds with these');
}

function show(ctx: CommandContext, record: AppRecord): void {
  ctx.out.section(`${record.name} buildpacks`);
  if (record.buildpacks.length === 0) ctx.out.line('(none set: .buildpacks or detection)');
  record.buildpacks.forEach((b, i) => ctx.out.line(`${i + 1}. ${b}`));
  if (record.config.BUILDPACK_URL) ctx.out.line(`BUILDPACK_URL is set and wins: ${record.config.BUILDPACK_URL}`);
  ctx.out.line(`stack: ${record.stack ?? `${ctx.state.config.stackImage} (default)`}`);
}

/** The images a key limited to apps may use: --stack-image and those buildpacks:allow-stack allows. */
export function allowedStacks(ctx: CommandContext): string[] {
  return [ctx.state.config.stackImage, ...ctx.state.allowedStacks.list()];
}

// A folder on the server is an admin's choice: a key limited to apps is refused before the path
// is looked at, with one message whether it exists or not.
function checkUrl(ctx: CommandContext, url: string): string {
  if (parseBuildpackUrl(url).kind === 'dir' && isScoped(ctx)) {
    log.warn('command_refused', { by: callerName(ctx), reason: 'buildpack_folder' });
    const who = ctx.caller.kind === 'ssh' ? `key "${ctx.caller.key.name}"` : 'this caller';
    throw new UserError('forbidden', `${who} may not use a buildpack folder on the server: only an admin may`, {
      hint: 'use a git URL (https://host/repo.git#ref), heroku/NAME or a tarball URL',
    });
  }
  return url.trim();
}

function index(text: string, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > max) throw new UserError('bad_arguments', `--index ${text} is not a position from 1 to ${max}`, { exitCode: 2 });
  return n - 1;
}
