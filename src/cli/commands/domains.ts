// domains:list, domains:add, domains:remove, domains:set: the names an app is served at.
// APP.DOMAIN and the names under it are the app APP's alone; the rest of DOMAIN is the admin's.
import { DEFAULT_MAX_APP_DOMAINS } from '../../domain-caps.ts';
import { log } from '../../log.ts';
import type { DomainRequester } from '../../state/domain-store.ts';
import { callerName, defineCommand, isScoped, type Command, type CommandContext } from '../command.ts';

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
      for (const c of ctx.state.domains.conflicts()) {
        if (c.holder === app) ctx.out.detail(`conflict: ${app} holds ${c.domain}, which is reserved for an app named ${c.reservedFor} (added before such names were reserved); an app ${c.reservedFor} cannot be created until it is released`);
        if (c.reservedFor === app) ctx.out.detail(`conflict: ${c.domain} is reserved for ${app} but app ${c.holder} holds it (added before such names were reserved); \`domains:remove ${c.holder} ${c.domain}\` gives it back to ${app}`);
      }
    },
  }),
  defineCommand({
    name: 'domains:add',
    args: ['APP', 'DOMAIN', '[DOMAIN...]'],
    summary: 'serve an app at more domains',
    help: `Point the DNS name at this server first: with --acme-email set, berth then fetches a certificate for it.\nA domain belongs to one app only. APP.DOMAIN and the names under it are reserved for the app called APP;\nother names under DOMAIN only an admin assigns. An app has at most --max-app-domains domains (default ${DEFAULT_MAX_APP_DOMAINS}), its default domain included.`,
    scope: 'app',
    async run(ctx, { app, args: [first, more] }) {
      ctx.state.apps.require(app);
      const added = await ctx.state.domains.add(app, [first, ...more], requester(ctx));
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
      const names = await ctx.state.domains.set(app, [first, ...more], requester(ctx));
      log.info('domains_set', { app, domains: names, by: callerName(ctx) });
      ctx.out.step(`${app} is served at ${names.join(', ')}`);
    },
  }),
];

/** The local CLI and admin keys are the admin; a key limited to some apps is not. */
function requester(ctx: CommandContext): DomainRequester {
  return { admin: !isScoped(ctx) };
}
