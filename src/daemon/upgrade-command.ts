// `berth upgrade [--binary PATH] [--ready-within S] [--probation S] [--drain S]` on this machine:
// asks the supervisor over its socket (the registry's `upgrade` command, for SSH and for help,
// asks it through the control plane). Exits non-zero when the new binary failed, with its last
// log lines.
import path from 'node:path';
import { dataPaths } from '../config.ts';
import { UserError } from '../errors.ts';
import type { Output } from '../ui/output.ts';
import { requestUpgrade, type UpgradeRequest } from './upgrade-socket.ts';


export async function runUpgrade(dataDir: string, args: readonly string[], out: Output): Promise<number> {
  const request: UpgradeRequest = {};
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    const value = args[++i];
    if (value === undefined) throw new UserError('bad_arguments', `${flag} needs a value`, { hint: 'see berth help upgrade', exitCode: 2 });
    if (flag === '--binary') request.binary = path.resolve(value);
    else if (flag === '--ready-within') request.readyWithinMs = seconds(flag, value);
    else if (flag === '--probation') request.probationMs = seconds(flag, value);
    else if (flag === '--drain') request.drainMs = seconds(flag, value);
    else throw new UserError('bad_arguments', `unknown flag "${flag}"`, { hint: 'see berth help upgrade', exitCode: 2 });
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
