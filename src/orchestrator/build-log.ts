// Build and deploy output kept on disk per app: what the pusher saw, saved as release-N.log for
// a release and failed-TIME.log for a deploy that failed (the newest few of those are kept).
import fs from 'node:fs/promises';
import path from 'node:path';
import { MemoryOutput, type Output } from '../ui/output.ts';
import { validateAppName } from '../app-name.ts';

/** Failed-deploy logs kept per app. */
export const FAILED_LOGS_KEPT = 10;

/** An Output that prints to the user and keeps a copy of everything printed. */
export class TeeOutput implements Output {
  private readonly user: Output;
  readonly copy = new MemoryOutput();

  constructor(user: Output) {
    this.user = user;
  }
  step(text: string): void {
    this.user.step(text);
    this.copy.step(text);
  }
  section(text: string): void {
    this.user.section(text);
    this.copy.section(text);
  }
  detail(text: string): void {
    this.user.detail(text);
    this.copy.detail(text);
  }
  error(text: string): void {
    this.user.error(text);
    this.copy.error(text);
  }
  line(text: string): void {
    this.user.line(text);
    this.copy.line(text);
  }
  raw(data: string | Buffer): void {
    this.user.raw(data);
    this.copy.raw(data);
  }
}

export class BuildLogs {
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  async saveRelease(app: string, release: number, text: string): Promise<void> {
    await this.write(app, `release-${release}.log`, text);
  }

  async saveFailed(app: string, text: string): Promise<void> {
    await this.write(app, `failed-${new Date().toISOString().replace(/[:.]/g, '-')}.log`, text);
    const failed = (await this.list(app)).filter((f) => f.startsWith('failed-'));
    for (const old of failed.slice(0, Math.max(0, failed.length - FAILED_LOGS_KEPT))) await fs.rm(path.join(this.appDir(app), old), { force: true });
  }

  async readRelease(app: string, release: number): Promise<string | undefined> {
    return fs.readFile(path.join(this.appDir(app), `release-${release}.log`), 'utf8').catch(() => undefined);
  }

  /** The newest failed deploy's output and when it failed, if any. */
  async lastFailed(app: string): Promise<{ at: string; text: string } | undefined> {
    const failed = (await this.list(app)).filter((f) => f.startsWith('failed-'));
    const last = failed.at(-1);
    if (!last) return undefined;
    return { at: last.slice('failed-'.length, -'.log'.length), text: await fs.readFile(path.join(this.appDir(app), last), 'utf8') };
  }

  async renameApp(from: string, to: string): Promise<void> {
    await fs.rename(this.appDir(from), this.appDir(to)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  async removeApp(app: string): Promise<void> {
    await fs.rm(this.appDir(app), { recursive: true, force: true });
  }

  private appDir(app: string): string {
    return path.join(this.dir, validateAppName(app));
  }

  private async list(app: string): Promise<string[]> {
    return (await fs.readdir(this.appDir(app)).catch(() => [] as string[])).sort();
  }

  private async write(app: string, file: string, text: string): Promise<void> {
    await fs.mkdir(this.appDir(app), { recursive: true, mode: 0o700 });
    await fs.writeFile(path.join(this.appDir(app), file), text, { mode: 0o600 });
  }
}
