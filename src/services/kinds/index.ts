// The kinds of backing service berth runs, by name.
import type { ServiceKind } from './kind.ts';
import { postgres } from './postgres.ts';
import { redis } from './redis.ts';

export type { DataFileImport, KindCommand, ServiceKind, ServiceRecordView, StagedImport } from './kind.ts';

export const SERVICE_KINDS: readonly ServiceKind[] = [postgres, redis];

/** The kind named `name`, or undefined. */
export function serviceKind(name: string): ServiceKind | undefined {
  return SERVICE_KINDS.find((k) => k.name === name);
}
