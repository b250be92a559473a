// domains:list, domains:add, domains:remove, domains:set: the names an app is served at.
import { validateAppName } from '../../app-name.ts';
import { log } from '../../log.ts';
import { expectPositionals, parseArgs } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { callerName } from './ssh-keys.ts';

export const domainCommands: Command[] = [
  {
    name: 'domains:list',
    usage: 'APP',
    summary: "list the domains an app is served at",
    scope: 'app',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional, ['APP']);
      const app = requireApp(ctx, positional[0]!);
      const names = ctx.services.domains.hostnames(app);
      ctx.out.section(`${app} domains`);
      if (names.length === 0) ctx.out.detail(`none: ${app} is not reachable through the proxy; add one with \`domains:add ${app} DOMAIN\``);
      for (const name of names) ctx.out.line(name);
    },
  },
  {
    name: 'domains:add',
    usage: 'APP DOMAIN [DOMAIN...]',
    summary: 'serve an app at more domains',
    help: 'Point the DNS name at this server first: with --acme-email set, berth then fetches a certificate for it.\nA domain belongs to one app only.',
    scope: 'app',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional.slice(0, 2), ['APP', 'DOMAIN']);
      const app = requireApp(ctx, positional[0]!);
      const added = await ctx.services.domains.add(app, positional.slice(1));
      if (added.length === 0) {
        ctx.out.step(`${app} already has ${positional.length === 2 ? 'that domain' : 'those domains'}`);
        return;
      }
      log.info('domains_added', { app, domains: added, by: callerName(ctx) });
      ctx.out.step(`Added ${added.join(', ')} to ${app}`);
    },
  },
  {
    name: 'domains:remove',
    usage: 'APP DOMAIN [DOMAIN...]',
    summary: 'stop serving an app at some domains (its default APP.DOMAIN too)',
    scope: 'app',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional.slice(0, 2), ['APP', 'DOMAIN']);
      const app = requireApp(ctx, positional[0]!);
      const removed = await ctx.services.domains.remove(app, positional.slice(1));
      log.info('domains_removed', { app, domains: removed, by: callerName(ctx) });
      ctx.out.step(`Removed ${removed.join(', ')} from ${app}`);
      if (ctx.services.domains.hostnames(app).length === 0) ctx.out.detail(`${app} has no domain left: it is not reachable through the proxy`);
    },
  },
  {
    name: 'domains:set',
    usage: 'APP DOMAIN [DOMAIN...]',
    summary: "replace all of an app's domains",
    help: 'The default APP.DOMAIN stays only if it is one of the domains given.',
    scope: 'app',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional.slice(0, 2), ['APP', 'DOMAIN']);
      const app = requireApp(ctx, positional[0]!);
      const names = await ctx.services.domains.set(app, positional.slice(1));
      log.info('domains_set', { app, domains: names, by: callerName(ctx) });
      ctx.out.step(`${app} is served at ${names.join(', ')}`);
    },
  },
];

function requireApp(ctx: CommandContext, name: string): string {
  const app = validateAppName(name);
  ctx.services.apps.require(app);
  return app;
}
