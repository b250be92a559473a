// Temporary folders for tests. Each one is removed when the test process exits, whether its
// tests passed or failed, so a run leaves nothing behind; scripts/test.sh fails a run that does.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const made = new Set<string>();

/** A new empty folder under the system's temp dir, named berth-PREFIX-XXXXXX. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${prefix}-`));
  if (made.size === 0) process.once('exit', removeTempDirs);
  made.add(dir);
  return dir;
}

/** Removes every folder tempDir() made so far (it also runs when the process exits). */
export function removeTempDirs(): void {
  for (const dir of made) {
    made.delete(dir);
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch (e) {
      // The others are still removed; the leftover shows in scripts/test.sh's check.
      process.stderr.write(`could not remove ${dir}: ${(e as Error).message}\n`);
    }
  }
}
