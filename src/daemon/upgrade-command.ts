// `berth upgrade [--binary PATH] [--ready-within S] [--probation S] [--drain S]`: the local CLI
// of an upgrade (the supervisor does it; see Supervisor.upgrade). Exits non-zero when the new
// binary failed, with its last log lines.
import path from 'node:path';
import { dataPaths } from '../config.ts';
import { UserError } from '../errors.ts';
import type { Output } from '../ui/output.ts';
import { requestUpgrade, type UpgradeRequest } from './upgrade-socket.ts';

export const UPGRADE_HELP = [
  'Usage: berth upgrade [--binary PATH] [--ready-within S] [--probation S] [--drain S]',
  '',
  "Replaces berth's proxy and control plane by those of a new binary, with no request refused.",
  '',
  '  --binary PATH      the new berth (default: the file now at the path berth serve was started from,',
  '                     so `install berth-new /usr/local/bin/berth && berth upgrade` is the whole procedure)',
  '  --ready-within S   how long each new process gets to load state and adopt containers (default 60)',
  '  --probation S      how long the new processes must stay up before the old proxy drains (default 5)',
  '  --drain S          how long pushes and commands running in the old control plane get to finish (default 600)',
  '',
  'If the new binary does not start, is not ready in time, or dies in the probation, the old',
  'processes keep serving and this exits with 1 and the new binary\'s last log lines.',
  'kill -USR2 on the supervisor (berth serve) upgrades with the defaults.',
].join('\n');

export async function runUpgrade(dataDir: string, args: readonly string[], out: Output): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out.line(UPGRADE_HELP);
    return 0;
  }
  const request: UpgradeRequest = {};
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    const value = args[++i];
    if (value === undefined) throw new UserError('bad_arguments', `${flag} needs a value`, { hint: 'see berth upgrade --help', exitCode: 2 });
    if (flag === '--binary') request.binary = path.resolve(value);
    else if (flag === '--ready-within') request.readyWithinMs = seconds(flag, value);
    else if (flag === '--probation') request.probationMs = seconds(flag, value);
    else if (flag === '--drain') request.drainMs = seconds(flag, value);
    else throw new UserError('bad_arguments', `unknown flag "${flag}"`, { hint: 'see berth upgrade --help', exitCode: 2 });
  }
  const result = await requestUpgrade(dataPaths(dataDir).supervisorSocket, request, (line) => out.step(line));
  if (result.ok) {
    out.step(`Done: ${result.message}`);
    return 0;
  }
  out.error(`upgrade failed: ${result.message}`);
  if (result.lastLines.length > 0) {
    out.section('the new binary\'s last log lines');
    for (const line of result.lastLines) out.detail(line);
  }
  return 1;
}

function seconds(flag: string, value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value) || Number(value) > 86_400) throw new UserError('bad_arguments', `${flag}: "${value}" is not a number of seconds`, { exitCode: 2 });
  return Math.round(Number(value) * 1000);
}
