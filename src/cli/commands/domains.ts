// domains:list, domains:add, domains:remove, domains:set: the names an app is served at.
import { log } from '../../log.ts';
import { callerName, defineCommand, type Command } from '../command.ts';

export const domainCommands: Command[] = [
  defineCommand({
    name: 'domains:list',
    args: ['APP'],
    summary: "list the domains an app is served at",
    scope: 'app',
    async run(ctx, { app }) {
      ctx.state.apps.require(app);
      const names = ctx.state.domains.hostnames(app);
      ctx.out.section(`${app} domains`);
      if (names.length === 0) ctx.out.detail(`none: ${app} is not reachable through the proxy; add one with \`domains:add ${app} DOMAIN\``);
      for (const name of names) ctx.out.line(name);
    },
  }),
  defineCommand({
    name: 'domains:add',
    args: ['APP', 'DOMAIN', '[DOMAIN...]'],
    summary: 'serve an app at more domains',
    help: 'Point the DNS name at this server first: with --acme-email set, berth then fetches a certificate for it.\nA domain belongs to one app only.',
    scope: 'app',
    async run(ctx, { app, args: [first, more] }) {
      ctx.state.apps.require(app);
      const added = await ctx.state.domains.add(app, [first, ...more]);
      if (added.length === 0) {
        ctx.out.step(`${app} already has ${more.length === 0 ? 'that domain' : 'those domains'}`);
        return;
      }
      log.info('domains_added', { app, domains: added, by: callerName(ctx) });
      ctx.out.step(`Added ${added.join(', ')} to ${app}`);
    },
  }),
  defineCommand({
    name: 'domains:remove',
    args: ['APP', 'DOMAIN', '[DOMAIN...]'],
    summary: 'stop serving an app at some domains (its default APP.DOMAIN too)',
    scope: 'app',
    async run(ctx, { app, args: [first, more] }) {
      ctx.state.apps.require(app);
      const removed = await ctx.state.domains.remove(app, [first, ...more]);
      log.info('domains_removed', { app, domains: removed, by: callerName(ctx) });
      ctx.out.step(`Removed ${removed.join(', ')} from ${app}`);
      if (ctx.state.domains.hostnames(app).length === 0) ctx.out.detail(`${app} has no domain left: it is not reachable through the proxy`);
    },
  }),
  defineCommand({
    name: 'domains:set',
    args: ['APP', 'DOMAIN', '[DOMAIN...]'],
    summary: "replace all of an app's domains",
    help: 'The default APP.DOMAIN stays only if it is one of the domains given.',
    scope: 'app',
    async run(ctx, { app, args: [first, more] }) {
      ctx.state.apps.require(app);
      const names = await ctx.state.domains.set(app, [first, ...more]);
      log.info('domains_set', { app, domains: names, by: callerName(ctx) });
      ctx.out.step(`${app} is served at ${names.join(', ')}`);
    },
  }),
];
