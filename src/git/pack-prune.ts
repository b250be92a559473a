// Removes the packs of a repository that no ref needs any more: every object reachable from the
// refs is marked (commits through their parents, trees through their entries, blobs by id
// alone, never inflated), and a pack none of whose objects is marked goes. Runs in the object
// reader's child process, under the app's lock, so no push stores or needs a pack meanwhile.
import { removePack } from './pack-receiver.ts';
import { ObjectStore, parseCommit, parseTag, parseTree, type ReadLimits } from './object-store.ts';

export interface PruneResult {
  /** Names of the packs removed. */
  removed: string[];
  /** Packs kept. */
  kept: number;
  /** Objects reachable from the refs. */
  reachable: number;
}

/**
 * Removes the packs under `gitdir` that hold no object reachable from `tips` (the objects the
 * refs point at). Any object it cannot read stops it before it removes anything: a pack is
 * removed only when the walk of everything reachable completed.
 */
export async function pruneUnreachablePacks(gitdir: string, tips: readonly string[], limits?: Partial<ReadLimits>): Promise<PruneResult> {
  const store = new ObjectStore(gitdir, limits);
  try {
    const packs = await store.packIndexes();
    if (packs.length === 0) return { removed: [], kept: 0, reachable: 0 };
    const reachable = new Set<string>();
    const pending = [...tips];
    while (pending.length > 0) {
      const oid = pending.pop()!;
      if (reachable.has(oid)) continue;
      reachable.add(oid);
      const type = await store.type(oid);
      if (type === undefined) throw new Error(`object ${oid} is reachable but missing`);
      if (type === 'blob') continue;
      const object = await store.read(oid);
      if (!object) throw new Error(`object ${oid} is reachable but missing`);
      if (object.type === 'commit') {
        const commit = parseCommit(object.content);
        pending.push(commit.tree, ...commit.parents);
      } else if (object.type === 'tag') {
        pending.push(parseTag(object.content).object);
      } else if (object.type === 'tree') {
        // Submodule entries name commits of another repository.
        for (const entry of parseTree(object.content)) if (entry.type !== 'commit') pending.push(entry.oid);
      }
    }
    const removed: string[] = [];
    for (const pack of packs) {
      let needed = false;
      for (const oid of pack.oids()) {
        if (reachable.has(oid)) {
          needed = true;
          break;
        }
      }
      if (!needed) removed.push(pack.name);
    }
    await store.close();
    for (const name of removed) await removePack(gitdir, name);
    return { removed, kept: packs.length - removed.length, reachable: reachable.size };
  } finally {
    await store.close();
  }
}

/**
 * Whether every move is a fast-forward provably without a walk of the history: from the new
 * commit back through the commits of the pack this push stored (`packOids`), the old one is
 * reached. Anything else (a merge of older commits, a force push) says no, and the caller prunes.
 */
export async function onlyFastForwards(gitdir: string, moves: readonly { oldOid: string; newOid: string }[], packOids: ReadonlySet<string>, limits?: Partial<ReadLimits>): Promise<boolean> {
  const store = new ObjectStore(gitdir, limits);
  try {
    for (const { oldOid, newOid } of moves) {
      const pending = [newOid];
      const seen = new Set<string>();
      let reached = false;
      while (pending.length > 0) {
        const oid = pending.pop()!;
        if (oid === oldOid) {
          reached = true;
          continue;
        }
        if (seen.has(oid)) continue;
        seen.add(oid);
        if (!packOids.has(oid)) return false; // an older commit besides the old tip: maybe not a fast-forward
        const object = await store.read(oid);
        if (object?.type !== 'commit') return false;
        pending.push(...parseCommit(object.content).parents);
      }
      if (!reached) return false;
    }
    return true;
  } finally {
    await store.close();
  }
}
