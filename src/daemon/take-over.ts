// When a control plane may run pushes and commands. At start-up it takes SSH connections at once,
// but runs what they ask only after it has taken over: after the supervisor's word (in an upgrade,
// once the old control plane has finished its pushes and commands and stopped), then once it has
// loaded the state and adopted the containers. Meanwhile a push or command waits, and is told why.
import type { ExecRoutes, ExecSession } from '../git/exec-router.ts';
import type { KeyRecord } from '../git/key-store.ts';

export type Phase = 'waiting' | 'starting' | 'open';

/** What pushes and commands run once open. */
export type Work = Pick<ExecRoutes, 'command' | 'push'>;

/**
 * How long a control plane waits for the supervisor's answer to its hello: a supervisor older
 * than take-over never answers (and starts a control plane only once the old one is gone); a
 * newer one answers at once.
 */
export const HELLO_ANSWER_MS = 10_000;

export class TakeOver {
  #phase: Phase = 'starting';
  #routes: Work | undefined;
  #keyNow: ((key: KeyRecord) => KeyRecord | undefined) | undefined;
  #open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));

  get phase(): Phase {
    return this.#phase;
  }

  /** The supervisor said another control plane is finishing its work: wait for take-over. */
  hold(): void {
    if (this.#phase === 'starting') this.#phase = 'waiting';
  }

  /** This control plane loads state and adopts containers now. */
  starting(): void {
    if (this.#phase === 'waiting') this.#phase = 'starting';
  }

  /**
   * Ready: pushes and commands run, those that waited first, each with its key as the state now
   * has it (`keyNow`; undefined: removed meanwhile).
   */
  open(routes: Work, keyNow: (key: KeyRecord) => KeyRecord | undefined): void {
    this.#routes = routes;
    this.#keyNow = keyNow;
    this.#phase = 'open';
    this.#open();
  }

  /** Routes for the SSH server from its start: each push and command waits for open(), saying why. */
  routes(isCommand: ExecRoutes['isCommand']): ExecRoutes {
    return {
      isCommand,
      command: async (words, session) => ((await this.#admit(session)) ? this.#routes!.command(words, session) : 255),
      push: async (app, session) => {
        if (await this.#admit(session)) await this.#routes!.push(app, session);
      },
    };
  }

  /** Waits until open; false when the client went away first. */
  async #admit(session: ExecSession): Promise<boolean> {
    if (this.#phase === 'open') return true;
    // On standard error: standard output of a push carries git's protocol.
    await session.stderr(
      this.#phase === 'waiting'
        ? '-----> berth is being upgraded: this waits until the previous version has finished its running pushes and commands, then runs in the new version\n'
        : '-----> berth is starting: this runs once it has loaded its state and adopted the running apps\n',
    );
    if (session.signal.aborted) return false;
    const gone = new Promise<void>((resolve) => session.signal.addEventListener('abort', () => resolve(), { once: true }));
    await Promise.race([this.#opened, gone]);
    if (this.#routes === undefined || session.signal.aborted) return false;
    // The key as the state read at take-over has it: its scope may have changed, or it may be gone.
    const key = this.#keyNow!(session.key);
    if (!key) {
      await session.stderr(` !     the key "${session.key.name}" was removed while this waited\n`);
      return false;
    }
    session.key = key;
    return true;
  }
}
