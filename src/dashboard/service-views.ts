// The backing services as the dashboard's API shows them: the ones the session's key may manage
// (every one for an admin), their state in the engine, their links, and their backups, which
// only admins see (as over SSH: backup commands are for admin keys).
import type { Platform } from '../platform/platform.ts';
import { actorName, isAdmin, type Actor } from './identity.ts';

export interface ServiceView {
  kind: string;
  name: string;
  /** The engine's word for its container: running, restarting, exited ... or missing. */
  status: string;
  links: string[];
  /** Newest first; null when the key is not an admin's. */
  backups: Array<{ name: string; size: number; createdAt: string }> | null;
}

export async function serviceViews(platform: Platform, actor: Actor): Promise<ServiceView[]> {
  const caller = { by: actorName(actor), ...(actor.kind === 'key' ? { key: actor.key } : {}) };
  const records = platform.services.kinds.flatMap((kind) => platform.services.list(kind.name, caller));
  return Promise.all(
    records.map(async (record) => ({
      kind: record.kind,
      name: record.name,
      status: (await platform.services.status(record)).status,
      links: record.links.map((l) => l.app).sort(),
      backups: isAdmin(actor)
        ? (await platform.services.backups(record)).files
            .map((f) => ({ name: f.name, size: f.bytes, createdAt: f.createdAt.toISOString() }))
            .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
        : null,
    })),
  );
}
