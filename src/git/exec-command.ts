// What an SSH exec string asks for: git's receive-pack or upload-pack for an app, or an admin
// command. The app name is validated here, where it enters.
import { validateAppName } from '../app-name.ts';
import { shellWords } from '../ui/shell-words.ts';

export type ExecCommand =
  | { kind: 'receive-pack'; app: string }
  | { kind: 'upload-pack'; app: string }
  | { kind: 'command'; words: string[] };

export function parseExecCommand(line: string): ExecCommand {
  const words = shellWords(line);
  let service: string | undefined;
  let rest = words;
  if (words[0] === 'git-receive-pack' || words[0] === 'git-upload-pack') {
    service = words[0].slice(4);
    rest = words.slice(1);
  } else if (words[0] === 'git' && (words[1] === 'receive-pack' || words[1] === 'upload-pack')) {
    service = words[1];
    rest = words.slice(2);
  }
  if (!service) return { kind: 'command', words };
  if (rest.length !== 1) return { kind: 'command', words };
  const app = validateAppName(rest[0]!.replace(/^\/+/, '').replace(/\/+$/, '').replace(/\.git$/, ''));
  return service === 'receive-pack' ? { kind: 'receive-pack', app } : { kind: 'upload-pack', app };
}

/**
 * What the log may say about an exec: the command's name (`config:set`, `git-receive-pack`) when
 * `known` knows it, never its arguments, which can carry config values and URLs with credentials;
 * an unknown first word could be anything the user typed, a password too.
 */
export function commandNameOf(line: string, known: (name: string) => boolean): string {
  const first = line.trimStart().split(/\s/, 1)[0] ?? '';
  if (first === 'git-receive-pack' || first === 'git-upload-pack' || first === 'git') return first;
  return known(first) ? first : '(unknown command)';
}
