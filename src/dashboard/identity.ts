// Who a dashboard login or session acts as: an SSH key (named by its fingerprint, looked up again
// on every request, so a removed key ends its sessions and a re-scoped key's new scope applies)
// or the local operator, who is an admin.
import { scopeAllows, type KeyRecord } from '../git/key-store.ts';
import type { State } from '../platform/state.ts';

export type Identity = { kind: 'local' } | { kind: 'key'; name: string; fingerprint: string };

/** The identity a link made for `key` carries (undefined: the local operator). */
export function identityOf(key: KeyRecord | undefined): Identity {
  return key ? { kind: 'key', name: key.name, fingerprint: key.fingerprint } : { kind: 'local' };
}

/** One string per identity, to count its links and sessions by. */
export function identityKey(identity: Identity): string {
  return identity.kind === 'local' ? 'local' : `key ${identity.fingerprint} ${identity.name}`;
}

/** The caller as the state has it now: the key record, `local`, or undefined when the key is gone. */
export type Actor = { kind: 'local' } | { kind: 'key'; key: KeyRecord };

export function actorNow(identity: Identity, state: State): Actor | undefined {
  if (identity.kind === 'local') return { kind: 'local' };
  const key = state.keys.byFingerprint(identity.fingerprint);
  // The same key under the same name: a key removed and added again under another name is another grant.
  return key && key.name === identity.name ? { kind: 'key', key } : undefined;
}

export function actorName(actor: Actor): string {
  return actor.kind === 'local' ? 'local' : actor.key.name;
}

export function isAdmin(actor: Actor): boolean {
  return actor.kind === 'local' || actor.key.apps === undefined;
}

/** Whether the actor may see and act on the app called `name` (which exists). */
export function maySee(actor: Actor, name: string, state: State): boolean {
  if (actor.kind === 'local') return true;
  return scopeAllows(actor.key, name, state.apps.get(name));
}
