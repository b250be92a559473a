// An app's existence: create, rename and destroy, end to end (records, containers and images,
// repository, proxy settings, certificates), each under the app's lock.
import { validateNewAppName } from '../app-name.ts';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import { newAppId } from '../state/app-store.ts';
import type { CertificateManager } from '../proxy/tls/certificate-manager.ts';
import type { Output } from '../ui/output.ts';
import type { AppLock } from './app-lock.ts';
import type { State } from './state.ts';

/**
 * Creates an app's record; with the daemon down nothing else can hold it, so no lock is needed.
 * Refused while another app holds a name reserved for it: an app starts with its default domain.
 * Keys given the name before it existed are bound to the new app's id first: a crash in between
 * leaves them bound to an app that never came, which reaches nothing.
 */
export async function createApp(state: State, app: string, by: string, via?: string): Promise<void> {
  validateNewAppName(app);
  if (state.apps.get(app)) throw new UserError('app_exists', `app "${app}" already exists`);
  state.domains.checkCreatable(app);
  const id = newAppId();
  await state.keys.bindApp(app, id);
  await state.apps.create(app, id);
  log.info('app_created', { app, by, ...(via ? { via } : {}) });
}

export class AppService {
  readonly #state: State;
  readonly #locks: AppLock;
  readonly #orchestrator: Orchestrator;
  readonly #certificates: CertificateManager;

  constructor(deps: { state: State; locks: AppLock; orchestrator: Orchestrator; certificates: CertificateManager }) {
    this.#state = deps.state;
    this.#locks = deps.locks;
    this.#orchestrator = deps.orchestrator;
    this.#certificates = deps.certificates;
  }

  /** Creates an app; its default domain's certificate is ordered at once, not at the next resync. */
  async create(app: string, by: string): Promise<void> {
    await this.#locks.run(app, () => createApp(this.#state, app, by));
    void this.#certificates.sync();
  }

  /** Stops and deletes an app: containers, images, repository, records, proxy settings, certificates. */
  async destroy(app: string, options: { by: string; out: Output }): Promise<void> {
    const { out } = options;
    this.#state.apps.require(app);
    await this.#locks.run(
      app,
      async () => {
        this.#state.apps.require(app);
        out.step(`Destroying ${app}`);
        await this.#orchestrator.destroyApp(app, out);
        // Its network went with it: the services linked to it are left unlinked, their data kept.
        await this.#state.services.forgetApp(app);
        await this.#state.apps.remove(app);
        await this.#state.domains.forget(app);
        await this.#state.proxySettings.removeApp(app);
        await this.#certificates.forgetApp(app);
        log.info('app_destroyed', { app, by: options.by });
        out.step(`Destroyed ${app}`);
      },
      () => out.step(`A push or another change to ${app} is running; waiting for it to finish`),
    );
  }

  /** Renames an app; it keeps serving throughout (see Orchestrator.renameApp). Returns where it is reached now. */
  async rename(from: string, newName: string, options: { by: string; out: Output }): Promise<string> {
    const { out } = options;
    const to = validateNewAppName(newName);
    this.#state.apps.require(from);
    if (this.#state.apps.get(to)) throw new UserError('app_exists', `app "${to}" already exists`, { hint: 'choose another name, or destroy that app first' });
    this.#state.domains.checkCreatable(to);
    // Both names, always in the same order, so two renames cannot wait on each other.
    const [first, second] = [from, to].sort() as [string, string];
    const wait = (app: string) => () => out.step(`A push or another change to ${app} is running; waiting for it to finish`);
    await this.#locks.run(
      first,
      () =>
        this.#locks.run(
          second,
          async () => {
            this.#state.apps.require(from);
            if (this.#state.apps.get(to)) throw new UserError('app_exists', `app "${to}" already exists`);
            this.#state.domains.checkCreatable(to);
            out.step(`Renaming ${from} to ${to}`);
            // Linked services join the new name's network before its containers start there.
            await this.#state.services.renameApp(from, to);
            try {
              await this.#orchestrator.renameApp(from, to, out);
            } catch (e) {
              await this.#state.services.renameApp(to, from);
              throw e;
            }
            await this.#state.proxySettings.renameApp(from, to);
            await this.#certificates.renameApp(from, to);
            // Key scopes follow the app's id; one given the new name before it existed now has this app.
            const { id } = this.#state.apps.require(to);
            await this.#state.keys.appRenamed(id, to);
            await this.#state.keys.bindApp(to, id);
            log.info('app_renamed', { from, to, by: options.by });
          },
          wait(second),
        ),
      wait(first),
    );
    return this.#orchestrator.appUrl(to);
  }
}
