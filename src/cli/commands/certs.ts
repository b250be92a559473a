// certs:report, certs:auto, certs:add, certs:remove: an app's HTTPS certificates.
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import type { AppLimitsReport, CertificateManager, DomainCertificateReport } from '../../proxy/tls/certificate-manager.ts';
import { splitPem } from '../../proxy/tls/certificate.ts';
import { readAtMost } from '../../read-all.ts';
import { callerName, defineCommand, requireDaemon, type Command, type CommandContext } from '../command.ts';

/** The most standard input certs:add reads. */
const MAX_PEM_INPUT_BYTES = 64 * 1024;

export const certCommands: Command[] = [
  defineCommand({
    name: 'certs:report',
    args: ['APP'],
    flags: { json: 'boolean' },
    summary: "show each domain's certificate: issuer, expiry, renewal, last attempt and error",
    scope: 'app',
    async run(ctx, { app, flags }) {
      ctx.state.apps.require(app);
      const certs = requireCertificates(ctx);
      const report = certs.report(app);
      const limits = certs.limits(app);
      if (flags.json) {
        ctx.out.line(JSON.stringify({ app, auto: certs.isAuto(app), acme: certs.acmeEnabled ? certs.directory : null, limits, domains: report }, null, 2));
        return;
      }
      ctx.out.section(`${app} certificates`);
      ctx.out.detail(`automatic certificates: ${certs.isAuto(app) ? 'on' : 'off'}${certs.acmeEnabled ? ` (from ${certs.directory})` : ' (berth serve has no --acme-email)'}`);
      for (const line of describeLimits(app, limits, certs.acmeEnabled)) ctx.out.detail(line);
      if (report.length === 0) ctx.out.detail(`${app} has no domains`);
      for (const entry of report) ctx.out.line(describe(entry));
    },
  }),
  defineCommand({
    name: 'certs:auto',
    args: ['APP', '[on|off]'],
    summary: 'turn automatic certificates for an app on or off (on by default)',
    help: 'Off: berth orders and renews no certificate for the app, and serves it over HTTPS only with a certificate added with certs:add.',
    scope: 'app',
    async run(ctx, { app, args: [value] }) {
      ctx.state.apps.require(app);
      const certs = requireCertificates(ctx);
      if (value === undefined) {
        ctx.out.line(certs.isAuto(app) ? 'on' : 'off');
        return;
      }
      if (value !== 'on' && value !== 'off') {
        throw new UserError('bad_arguments', `certs:auto: "${value}" is neither on nor off`, { hint: `usage: certs:auto ${app} on|off`, exitCode: 2 });
      }
      await certs.setAuto(app, value === 'on');
      log.info('certs_auto_set', { app, on: value === 'on', by: callerName(ctx) });
      ctx.out.step(`Automatic certificates for ${app}: ${value}`);
    },
  }),
  defineCommand({
    name: 'certs:add',
    args: ['APP', 'CERTFILE', '[KEYFILE]'],
    // Two forms: files, or both from standard input.
    usage: 'APP CERTFILE KEYFILE | APP -',
    summary: "serve an app with your own certificate instead of automatic ones",
    help: 'CERTFILE is the PEM chain (server certificate first), KEYFILE its unencrypted private key.\nWith -, both are read from standard input: cat cert.pem key.pem | ssh -p 2222 berth@HOST certs:add APP -\nRefused when the key does not match or the certificate does not cover every domain of the app.',
    scope: 'app',
    async run(ctx, { app, args: [certFile, keyFile] }) {
      ctx.state.apps.require(app);
      const certs = requireCertificates(ctx);
      let certText: string;
      let keyText: string;
      if (certFile === '-') {
        if (keyFile !== undefined) throw new UserError('bad_arguments', 'certs:add: with -, give no KEYFILE: the certificate and key both come from standard input', { exitCode: 2 });
        // A chain and its key fit in a few KiB; anything much larger is not a certificate.
        const stdin = ctx.stdin ? await readAtMost(ctx.stdin(), MAX_PEM_INPUT_BYTES, 'the certificate and key on standard input') : await ctx.readStdin();
        if (stdin.length > MAX_PEM_INPUT_BYTES) throw new UserError('input_too_large', `the certificate and key on standard input: more than ${MAX_PEM_INPUT_BYTES / 1024} KiB, the most accepted`);
        const input = stdin.toString('utf8');
        certText = splitPem(input).certs.join('');
        keyText = splitPem(input).keys.join('');
      } else {
        if (keyFile === undefined) throw new UserError('bad_arguments', 'certs:add: missing KEYFILE', { hint: `usage: certs:add ${app} CERTFILE KEYFILE`, exitCode: 2 });
        certText = await readInputFile(ctx, certFile);
        keyText = await readInputFile(ctx, keyFile);
      }
      const bundle = await certs.addCustom(app, certText, keyText);
      log.info('certs_added', { app, by: callerName(ctx) });
      ctx.out.step(`Added a certificate to ${app}: ${bundle.info.names.join(', ')}, issued by ${bundle.info.issuer}, expires ${bundle.info.notAfter.toISOString()}`);
    },
  }),
  defineCommand({
    name: 'certs:remove',
    args: ['APP'],
    summary: 'remove the certificate added with certs:add (automatic certificates take over)',
    scope: 'app',
    async run(ctx, { app }) {
      ctx.state.apps.require(app);
      await requireCertificates(ctx).removeCustom(app);
      log.info('certs_removed', { app, by: callerName(ctx) });
      ctx.out.step(`Removed the certificate of ${app}`);
    },
  }),
];

function describe(entry: DomainCertificateReport): string {
  const rows: Array<[string, string]> = [];
  const cert = entry.certificate;
  rows.push(['certificate', cert ? `${cert.source === 'custom' ? 'custom (certs:add)' : 'automatic (ACME)'}, serial ${cert.serial}` : 'none: served over HTTP only']);
  if (cert) {
    rows.push(['issuer', cert.issuer]);
    rows.push(['expires', `${cert.notAfter}${relative(cert.notAfter)}`]);
  }
  rows.push(['acme', entry.acme]);
  if (entry.renewAt) rows.push(['renews', `${entry.renewAt}${relative(entry.renewAt)}`]);
  const a = entry.attempts;
  if (a.lastAttemptAt) rows.push(['last attempt', `${a.lastAttemptAt} ${a.lastError ? 'failed' : `succeeded (${a.challenge ?? 'cached validation'})`}`]);
  if (a.lastError) rows.push(['last error', a.lastError]);
  if (a.failures > 0) rows.push(['failures', `${a.failures} in a row${a.nextAttemptAt ? `, next attempt ${a.nextAttemptAt}${relative(a.nextAttemptAt)}` : ''}`]);
  if (entry.ordering) rows.push(['status', 'ordering now']);
  if (entry.waiting) rows.push(['waiting', entry.waiting]);
  return [entry.domain, ...rows.map(([k, v]) => `  ${(k + ':').padEnd(14)} ${v}`)].join('\n');
}

/** The app's caps and the ACME account's state, as detail lines of certs:report. */
function describeLimits(app: string, limits: AppLimitsReport, acme: boolean): string[] {
  const lines = [`domains: ${limits.domains.used} of at most ${limits.domains.cap} (--max-app-domains)`];
  if (acme) {
    const { orders, accountPause: pause } = limits;
    lines.push(`ACME orders in the last hour: ${orders.lastHour} of at most ${orders.cap} (--max-app-acme-orders)${orders.nextOrderAt ? `; the next one at ${orders.nextOrderAt}${relative(orders.nextOrderAt)}` : ''}`);
    lines.push(pause
      ? `ACME account: paused until ${pause.until}${relative(pause.until)}, for every app: the CA answered rate-limited at ${pause.since} (ordering ${pause.domain}): ${pause.detail}`
      : 'ACME account: not rate-limited');
  }
  for (const c of limits.conflicts) {
    lines.push(c.holder === app
      ? `conflict: ${app} holds ${c.domain}, reserved for an app named ${c.reservedFor} (added before such names were reserved)`
      : `conflict: ${c.domain} is reserved for ${app} but app ${c.holder} holds it; \`domains:remove ${c.holder} ${c.domain}\` gives it back`);
  }
  return lines;
}

function relative(iso: string): string {
  const ms = Date.parse(iso) - Date.now();
  const abs = Math.abs(ms);
  const text = abs < 120_000 ? `${Math.round(abs / 1000)} s` : abs < 7_200_000 ? `${Math.round(abs / 60_000)} min` : abs < 172_800_000 ? `${Math.round(abs / 3_600_000)} h` : `${Math.round(abs / 86_400_000)} days`;
  return ms >= 0 ? ` (in ${text})` : ` (${text} ago)`;
}

function requireCertificates(ctx: CommandContext): CertificateManager {
  return requireDaemon(ctx).certificates;
}

async function readInputFile(ctx: CommandContext, file: string): Promise<string> {
  if (ctx.caller.kind === 'ssh') {
    throw new UserError('file_over_ssh', 'over SSH the certificate and key are read from standard input, not from files on the server', {
      hint: 'run: cat cert.pem key.pem | ssh -p PORT berth@HOST certs:add APP -',
    });
  }
  try {
    return await fs.readFile(path.resolve(ctx.cwd, file), 'utf8');
  } catch (e) {
    throw new UserError('file_unreadable', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
