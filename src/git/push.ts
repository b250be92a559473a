// A push as git sees it: receive-pack into the app's repository, with the deploy branch (main,
// else master) handed to a deploy step as git's pre-receive; other refs are stored only. What a
// deploy is belongs to the caller (the application layer).
import type { Readable, Writable } from 'node:stream';
import type { Output } from '../ui/output.ts';
import { StreamOutput } from '../ui/output.ts';
import type { PushLimits } from '../push-limits.ts';
import type { DiskBudget } from './disk-budget.ts';
import { serveReceivePack, type RefUpdate } from './receive-pack.ts';
import { ZERO_OID, type Repository } from './repository.ts';

/** Branches whose push deploys the app; any other ref is stored only. */
export const DEPLOY_BRANCHES = ['refs/heads/main', 'refs/heads/master'] as const;

/**
 * Deploys the pushed commit of the deploy branch; `out` reaches the client as `remote:` lines.
 * Resolves to the reason shown on `! [remote rejected]` when the ref must not move.
 */
export type DeployStep = (commit: string, out: Output) => Promise<string | undefined>;

export interface PushRules {
  /** The caps on one push (push-limits.ts). */
  limits: PushLimits;
  /** How long the client may send nothing while berth waits for its commands or pack (--push-timeout); 0 never. */
  idleTimeoutMs: number;
  /** What the pack may take on disk (disk-budget.ts). */
  diskBudget?: DiskBudget;
}

export async function receivePush(streams: { input: Readable; output: Writable }, repo: Repository, rules: PushRules, deploy: DeployStep): Promise<void> {
  await serveReceivePack(streams, repo, {
    preReceive: async (updates, progress) => {
      const out = new StreamOutput((s) => progress(s.toString()));
      const verdicts = new Map<string, string>();
      const chosen = chooseDeployUpdate(updates);
      for (const u of updates) {
        if (u === chosen) continue;
        if (u.newOid === ZERO_OID) out.step(`${u.ref} deleted`);
        else out.step(`${u.ref} stored; only main or master is deployed`);
      }
      if (!chosen) return verdicts;
      const rejected = await deploy(chosen.newOid, out);
      if (rejected !== undefined) verdicts.set(chosen.ref, rejected);
      return verdicts;
    },
  }, { limits: rules.limits, idleTimeoutMs: rules.idleTimeoutMs, ...(rules.diskBudget ? { diskBudget: rules.diskBudget } : {}) });
}

// main wins over master when both arrive in one push; deletions never deploy.
function chooseDeployUpdate(updates: RefUpdate[]): RefUpdate | undefined {
  for (const branch of DEPLOY_BRANCHES) {
    const u = updates.find((x) => x.ref === branch && x.newOid !== ZERO_OID);
    if (u) return u;
  }
  return undefined;
}
