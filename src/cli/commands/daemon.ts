// status: berth's own processes (supervisor, proxy, control), one line each. upgrade: their
// replacement by a new binary's, asked over SSH (the local `berth upgrade` asks the supervisor
// directly; see daemon/upgrade-command.ts).
import path from 'node:path';
import { UserError } from '../../errors.ts';
import { defineCommand, type Command } from '../command.ts';
import { table } from '../../ui/output.ts';

export const daemonCommands: Command[] = [
  defineCommand({
    name: 'status',
    args: [],
    summary: "show berth's own processes: role, pid, version, uptime, memory",
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { daemon }) {
      const processes = await daemon().daemonStatus();
      const rows = [['ROLE', 'PID', 'VERSION', 'UPTIME', 'RSS', 'STATE']];
      for (const p of processes) rows.push([p.role, String(p.pid), p.version, duration(p.uptimeS), `${(p.rssBytes / 1024 / 1024).toFixed(1)} MB`, p.retiring ? 'retiring' : 'serving']);
      ctx.out.line(table(rows));
    },
  }),
  defineCommand({
    name: 'upgrade',
    args: [],
    flags: { binary: 'PATH', 'ready-within': 'S', probation: 'S', drain: 'S' },
    summary: "replace berth's proxy and control plane by a new binary's, with no request refused",
    help: [
      '  --binary PATH      the new berth, on the server (default: the file now at the path berth serve was',
      '                     started from, so `install berth-new /usr/local/bin/berth && berth upgrade` is the whole procedure)',
      '  --ready-within S   how long each new process gets to load state and adopt containers (default 60)',
      '  --probation S      how long the new processes must stay up before the old proxy drains (default 5)',
      '  --drain S          how long pushes and commands running in the old control plane get to finish (default 600)',
      '',
      'The new proxy loads the whole state and serves beside the old one; the old control plane',
      'finishes its pushes and commands; the new one adopts the containers; after the probation',
      'the old proxy drains. If the new binary does not start, is not ready in time, or dies in',
      "the probation, the old processes keep serving and this exits 1 with the new binary's last",
      'log lines. kill -USR2 on the supervisor (berth serve) upgrades with the defaults.',
    ].join('\n'),
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { flags, daemon }) {
      const request = {
        ...(flags.binary ? { binary: path.resolve('/', flags.binary) } : {}),
        ...(flags['ready-within'] ? { readyWithinMs: seconds('--ready-within', flags['ready-within']) } : {}),
        ...(flags.probation ? { probationMs: seconds('--probation', flags.probation) } : {}),
        ...(flags.drain ? { drainMs: seconds('--drain', flags.drain) } : {}),
      };
      const result = await daemon().upgrade(request, (line) => ctx.out.step(line));
      if (result.ok) {
        ctx.out.step(`Done: ${result.message}`);
        return 0;
      }
      ctx.out.error(`upgrade failed: ${result.message}`);
      if (result.lastLines.length > 0) {
        ctx.out.section("the new binary's last log lines");
        for (const line of result.lastLines) ctx.out.detail(line);
      }
      return 1;
    },
  }),
];

function seconds(flag: string, value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value) || Number(value) > 86_400) throw new UserError('bad_arguments', `${flag}: "${value}" is not a number of seconds`, { exitCode: 2 });
  return Math.round(Number(value) * 1000);
}

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  const hours = Math.floor(seconds / 3600);
  return hours < 48 ? `${hours}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(hours / 24)}d${hours % 24}h`;
}
