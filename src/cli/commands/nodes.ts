// nodes:list, nodes:join-command, nodes:label, nodes:drain, nodes:activate: the machines of the
// Swarm berth schedules on (--scheduler swarm). Admin keys only: a node is every app's.
import { UserError } from '../../errors.ts';
import type { SwarmNode } from '../../orchestrator/swarm.ts';
import { table } from '../../ui/output.ts';
import { byName, defineCommand, type Command } from '../command.ts';

/**
 * Printed under the join command: a web task's port is published in host mode on its node's every
 * address, so anything that reaches the node reaches the dyno without berth's proxy.
 */
export const NODE_FIREWALL_ADVICE =
  '# then, on that machine, let only berth reach the dynos\' published ports (docs/swarm.md, "What a node exposes"): iptables -I DOCKER-USER -p tcp -m conntrack --ctdir ORIGINAL --ctorigdstport 32768:60999 ! -s ADDRESS_OF_BERTH -j DROP';

export const nodeCommands: Command[] = [
  defineCommand({
    name: 'nodes:list',
    args: [],
    summary: "list the Swarm's nodes: address, role, state, availability, labels and the dynos each runs",
    help: 'ROLE is manager (leader for the one that leads) or worker; STATE is the engine\'s (ready, down ...); AVAILABILITY is active, pause or drain (nodes:drain, nodes:activate). A line under the table names the backing services, which run on the manager. Needs --scheduler swarm.',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { daemon }) {
      const nodes = await daemon().nodes.list();
      const rows = nodes.map((n) => [
        n.hostname,
        n.id.slice(0, 12),
        n.address,
        n.leader ? 'leader' : n.role,
        n.state,
        n.availability,
        String(n.dynos.length),
        labelText(n.labels) || '-',
      ]);
      ctx.out.line(table([['NODE', 'ID', 'ADDRESS', 'ROLE', 'STATE', 'AVAILABILITY', 'DYNOS', 'LABELS'], ...rows]));
      // Backing services are containers of the manager's engine, pinned there with their volumes.
      for (const n of nodes) if (n.services.length) ctx.out.line(`Services on ${n.hostname} (manager): ${n.services.join(', ')}`);
    },
  }),
  defineCommand({
    name: 'nodes:join-command',
    args: [],
    flags: { manager: 'boolean' },
    summary: 'print the command a new machine runs to join the Swarm (as a worker, or --manager)',
    help: 'Run the printed command on the new machine, which has Docker installed and reaches the manager\'s address on port 2377 (and the nodes each other on 7946 tcp/udp and 4789 udp). The token in it lets any machine join: keep it secret. The node is listed by nodes:list once it is ready. The comment line under it says how to let only berth reach the dynos\' published ports there (docs/swarm.md).',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { flags, daemon }) {
      const role = flags.manager ? 'manager' : 'worker';
      const command = await daemon().nodes.joinCommand(role);
      await ctx.out.step(`To add a ${role}, run this on the new machine (Docker installed):`);
      await ctx.out.line(command);
      await ctx.out.line(NODE_FIREWALL_ADVICE);
    },
  }),
  defineCommand({
    name: 'nodes:label',
    args: ['NODE', '[KEY=VALUE...]'],
    flags: { remove: 'KEY,KEY' },
    summary: "set or remove a node's labels (KEY= or --remove KEY removes); without any: show them",
    help: 'Placement constraints read them: ps:set APP TYPE placement node.labels.zone==a. NODE is a name or an id (or the start of one) as nodes:list shows it.',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { args: [node, assignments], flags, daemon }) {
      const changes = labelChanges(assignments, flags.remove);
      const nodes = daemon().nodes;
      if (Object.keys(changes).length === 0) {
        const found = await nodes.get(node);
        ctx.out.line(labelText(found.labels, '\n') || `node ${found.hostname} has no labels`);
        return;
      }
      const labelled = await nodes.label(node, changes, byName(ctx));
      await ctx.out.step(`Labels of node ${labelled.hostname}: ${labelText(labelled.labels) || '(none)'}`);
    },
  }),
  defineCommand({
    name: 'nodes:drain',
    args: ['NODE'],
    summary: 'move the dynos off a node and stop it taking tasks, dropping no request',
    help: 'The node first takes no new tasks; each app with dynos there is redeployed elsewhere (gated and swapped as any deploy); then Swarm stops what is left there. If an app cannot move, the node takes tasks again and the error says why. nodes:activate undoes it.',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { args: [node], daemon }) {
      await daemon().nodes.drain(node, ctx.out, byName(ctx));
    },
  }),
  defineCommand({
    name: 'nodes:activate',
    args: ['NODE'],
    summary: 'let a drained or paused node take tasks again',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { args: [node], daemon }) {
      await daemon().nodes.activate(node, ctx.out, byName(ctx));
    },
  }),
];

/** `zone=a disk=ssd gpu=` and `--remove a,b` → the change: a value sets, null removes. */
export function labelChanges(assignments: readonly string[], remove: string | undefined): Record<string, string | null> {
  const changes: Record<string, string | null> = {};
  for (const word of assignments) {
    const eq = word.indexOf('=');
    if (eq <= 0) {
      throw new UserError('bad_arguments', `nodes:label: "${word}" is not KEY=VALUE`, { hint: 'such as: nodes:label NODE zone=a (zone= removes the label)', exitCode: 2 });
    }
    const value = word.slice(eq + 1);
    changes[word.slice(0, eq)] = value === '' ? null : value;
  }
  for (const key of (remove ?? '').split(',').map((k) => k.trim()).filter(Boolean)) changes[key] = null;
  return changes;
}

function labelText(labels: SwarmNode['labels'], separator = ','): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(separator);
}
