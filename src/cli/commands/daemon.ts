// status: berth's own processes (supervisor, proxy, control), one line each.
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
      const rows = [['ROLE', 'PID', 'VERSION', 'UPTIME', 'RSS']];
      for (const p of processes) rows.push([p.role, String(p.pid), p.version, duration(p.uptimeS), `${(p.rssBytes / 1024 / 1024).toFixed(1)} MB`]);
      ctx.out.line(table(rows));
    },
  }),
];

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  const hours = Math.floor(seconds / 3600);
  return hours < 48 ? `${hours}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(hours / 24)}d${hours % 24}h`;
}
