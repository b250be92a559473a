// Backing services end to end: create, list, info, restart, logs, destroy, link and unlink (the
// network joined and the URL set as a config change: a new release, a zero-downtime restart),
// expose; and who may do what: a key limited to apps manages only the services of its apps.
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { validateConfigKey } from '../config-vars.ts';
import { UserError } from '../errors.ts';
import { scopeAllows, scopeNames, type KeyRecord } from '../git/key-store.ts';
import { log } from '../log.ts';
import { changeConfig } from '../orchestrator/app-operations.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import { EXPOSED_HOST_DEFAULT, serviceLockName, type ServiceStatus } from '../orchestrator/service-manager.ts';
import { BackupScheduler, BackupStore, type BackupFile } from '../services/backups.ts';
import { backup, connect, exportData, importData, restore, type ConnectIo, type ServiceHandle } from '../services/data-ops.ts';
import type { ServiceKind } from '../services/kinds/kind.ts';
import { validateServiceName, type ServiceRecord } from '../state/service-store.ts';
import { StreamOutput, type Output } from '../ui/output.ts';
import type { AppLock } from './app-lock.ts';
import type { State } from './state.ts';

/** Who asks: the local operator or an admin key (undefined key), or a key limited to apps. */
export interface ServiceCaller {
  by: string;
  key?: KeyRecord;
}

export interface ServiceInfo {
  record: ServiceRecord;
  status: ServiceStatus;
  volume: string;
  /** Its address on the networks of linked apps. */
  host: string;
  /** The URL linked apps get, the password shown as *** unless asked for. */
  url: string;
  /** The config var each linked app has it under. */
  links: Array<{ app: string; variable: string }>;
  /** What the server says its version is, when it runs. */
  version: string | undefined;
  /** The memory and process limits its container runs with. */
  limits: { memory?: number; pids?: number };
  /** On the swarm scheduler: the node its container runs on, the manager's (`HOSTNAME (manager)`). */
  node?: string;
}

export class ServiceService {
  readonly #state: State;
  readonly #locks: AppLock;
  readonly #orchestrator: Orchestrator;
  /** Runs each service's backup-schedule; started by the control plane once services are adopted. */
  readonly #scheduler: BackupScheduler;

  constructor(deps: { state: State; locks: AppLock; orchestrator: Orchestrator; backupScheduler?: BackupScheduler }) {
    this.#state = deps.state;
    this.#locks = deps.locks;
    this.#orchestrator = deps.orchestrator;
    this.#scheduler = deps.backupScheduler ?? new BackupScheduler();
  }

  get kinds(): readonly ServiceKind[] {
    return this.#orchestrator.services.kinds;
  }

  /** The service, if `caller` may manage it; otherwise a refusal (logged) that says why. */
  require(kind: string, name: string, caller: ServiceCaller, command: string): ServiceRecord {
    const record = this.#state.services.require(kind, validateServiceName(name));
    authorizeService(this.#state, record, caller, command);
    return record;
  }

  /** Inside the service's lock: the service still exists, and `caller` may still manage it. */
  #recheck(record: ServiceRecord, caller: ServiceCaller, command: string): ServiceRecord {
    const current = this.#state.services.require(record.kind, record.name);
    authorizeService(this.#state, current, caller, command);
    return current;
  }

  async create(kind: string, name: string, options: { image?: string; memory?: number; caller: ServiceCaller; out: Output }): Promise<ServiceRecord> {
    const k = this.#orchestrator.services.kind(kind);
    validateServiceName(name);
    const { key } = options.caller;
    if (key?.apps && !key.services) {
      log.warn('command_refused', { key: key.name, command: `${kind}:create`, reason: 'services_not_allowed' });
      throw new UserError('forbidden', `key "${key.name}" may not create services: it is limited to apps, and was not allowed to create services`, {
        hint: `ask the server's admin to create it, or to allow it: ssh-keys:scope ${key.name} --apps ${scopeNames(key.apps, (id) => this.#state.apps.byId(id)?.name).join(',')} --services`,
      });
    }
    const defaultMemory = this.#orchestrator.defaultLimit.memory;
    if (key?.apps && options.memory && defaultMemory && options.memory > defaultMemory) {
      log.warn('command_refused', { key: key.name, command: `${kind}:create`, reason: 'memory_over_default' });
      throw new UserError('forbidden', `key "${key.name}" may not give a service more memory than the default, ${Math.round(defaultMemory / 1024 ** 2)}m: it is limited to apps`, {
        hint: `create it with --memory ${Math.round(defaultMemory / 1024 ** 2)}m or less, or ask the server's admin`,
      });
    }
    return this.#locks.run(lockName(kind, name), async () => {
      const record = await this.#state.services.create({
        kind,
        name,
        image: options.image ?? this.#orchestrator.services.defaultImage(k),
        ...(options.memory ? { memory: options.memory } : {}),
        createdBy: options.caller.by,
        ...(key?.apps ? { createdByKey: key.fingerprint } : {}),
      });
      try {
        await this.#orchestrator.services.provision(record, options.out);
      } catch (e) {
        await this.#state.services.remove(kind, name);
        throw e;
      }
      log.info('service_created', { service: `${kind}/${name}`, image: record.image, by: options.caller.by });
      return record;
    });
  }

  /** The services of a kind that `caller` may see (a scoped key: the ones it may manage). */
  list(kind: string, caller: ServiceCaller): ServiceRecord[] {
    this.#orchestrator.services.kind(kind);
    return this.#state.services.list(kind).filter((r) => mayManage(this.#state, r, caller.key));
  }

  status(record: ServiceRecord): Promise<ServiceStatus> {
    return this.#orchestrator.services.status(record);
  }

  async info(record: ServiceRecord, options: { showPassword: boolean }): Promise<ServiceInfo> {
    const services = this.#orchestrator.services;
    const kind = services.kind(record.kind);
    const names = services.names(record);
    const view = await services.view(record);
    const url = kind.url(options.showPassword ? view : { ...view, password: '***' }, names.alias);
    const node = await services.node(record);
    return {
      record,
      status: await services.status(record),
      volume: names.volume,
      host: names.alias,
      url,
      links: record.links.map((l) => ({ app: l.app, variable: `${l.alias}_URL` })),
      version: await services.version(record),
      limits: services.limits(record),
      ...(node ? { node } : {}),
    };
  }

  restart(record: ServiceRecord, caller: ServiceCaller, out: Output): Promise<void> {
    return this.#locks.run(lockName(record.kind, record.name), async () => {
      // The scope again, now that nothing else changes the service: a link made meanwhile may have put it out of reach.
      this.#recheck(record, caller, `${record.kind}:restart`);
      await this.#orchestrator.services.restart(this.#state.services.require(record.kind, record.name), out);
      log.info('service_restarted', { service: `${record.kind}/${record.name}`, by: caller.by });
    });
  }

  /** Removes the container, the volume (the data) and the password; refused while an app is linked. */
  destroy(record: ServiceRecord, caller: ServiceCaller, out: Output): Promise<void> {
    return this.#locks.run(lockName(record.kind, record.name), async () => {
      // The scope again, now that nothing else changes the service: a link made meanwhile may have put it out of reach.
      this.#recheck(record, caller, `${record.kind}:destroy`);
      const current = this.#state.services.require(record.kind, record.name);
      if (current.links.length > 0) {
        const apps = current.links.map((l) => l.app);
        throw new UserError('service_linked', `${record.kind} service ${record.name} is linked to ${apps.join(', ')}; its data is not destroyed while an app uses it`, {
          hint: apps.map((a) => `${record.kind}:unlink ${record.name} ${a}`).join('; ') + ', then destroy it',
        });
      }
      out.step(`Destroying ${record.kind} service ${record.name}`);
      this.#scheduler.remove(scheduleKey(record));
      await this.#orchestrator.services.remove(current);
      await this.#state.services.remove(record.kind, record.name);
      log.info('service_destroyed', { service: `${record.kind}/${record.name}`, by: caller.by });
      out.step(`Destroyed ${record.kind} service ${record.name} and its data`);
    });
  }

  logs(record: ServiceRecord, options: { tail: number; timestamps: boolean }): Promise<string> {
    return this.runningContainerOrAny(record).then((id) => this.#orchestrator.services.logs(id, options));
  }

  async followLogs(record: ServiceRecord, options: { tail: number; onData(data: Buffer): void | Promise<void> }): Promise<{ stop(): void }> {
    return this.#orchestrator.services.followLogs(await this.runningContainerOrAny(record), options);
  }

  /**
   * Links a service to an app: the service joins the app's network, then `ALIAS_URL` (the
   * kind's DATABASE_URL or REDIS_URL by default) is set through the config path, a new release
   * deployed with zero downtime. If that deploy fails, the link is undone.
   */
  async link(record: ServiceRecord, app: string, options: { alias?: string; caller: ServiceCaller; out: Output }): Promise<void> {
    const kind = this.#orchestrator.services.kind(record.kind);
    const alias = options.alias === undefined ? kind.urlVariable.replace(/_URL$/, '') : options.alias.toUpperCase().replace(/_URL$/, '');
    const variable = validateConfigKey(`${alias}_URL`);
    const appRecord = this.#state.apps.require(app);
    const { key } = options.caller;
    if (key && !scopeAllows(key, app, appRecord)) {
      log.warn('command_refused', { key: key.name, command: `${record.kind}:link`, app, reason: 'app_scope' });
      throw new UserError('forbidden', `key "${key.name}" may not link services to ${app}: it is limited to the apps ${scopeNames(key.apps ?? [], (id) => this.#state.apps.byId(id)?.name).join(', ')}`);
    }
    await this.#locks.run(lockName(record.kind, record.name), async () => {
      // The scope again, now that nothing else changes the service: a link made meanwhile may have put it out of reach.
      this.#recheck(record, options.caller, `${record.kind}:link`);
      const current = this.#state.services.require(record.kind, record.name);
      if (current.links.some((l) => l.app === app)) throw new UserError('already_linked', `${record.kind} service ${record.name} is already linked to ${app}`, { hint: `\`${record.kind}:info ${record.name}\` shows its links` });
      const taken = this.#state.services.linkedTo(app).find((s) => s.links.some((l) => l.app === app && `${l.alias}_URL` === variable));
      if (taken || (appRecord.config[variable] !== undefined && !taken)) {
        throw new UserError('config_var_taken', `${app} already has ${variable}${taken ? ` (from ${taken.kind} service ${taken.name})` : ''}`, {
          hint: `link under another name: ${record.kind}:link ${record.name} ${app} --alias OTHER (sets OTHER_URL)${taken ? '' : `, or config:unset ${app} ${variable} first`}`,
        });
      }
      options.out.step(`Linking ${record.kind} service ${record.name} to ${app} as ${variable}`);
      await this.#orchestrator.services.link(current, app);
      const linked = await this.#state.services.update(record.kind, record.name, (d) => void d.links.push({ app, alias }));
      const url = await this.#orchestrator.services.url(linked);
      try {
        await this.#locks.exclusive(app, options.out, () => changeConfig(this.#orchestrator, app, { set: { [variable]: url } }, { restart: true, by: options.caller.by, out: options.out }));
      } catch (e) {
        await this.#state.services.update(record.kind, record.name, (d) => void (d.links = d.links.filter((l) => l.app !== app)));
        await this.#orchestrator.services.unlink(linked, app).catch((err) => log.warn('service_unlink_failed', { service: `${record.kind}/${record.name}`, app, error: err }));
        throw e;
      }
      log.info('service_linked', { service: `${record.kind}/${record.name}`, app, variable, by: options.caller.by });
    });
  }

  /** Unsets the app's URL (a new release, the app restarted without it), then the service leaves the app's network. */
  async unlink(record: ServiceRecord, app: string, options: { caller: ServiceCaller; out: Output }): Promise<void> {
    await this.#locks.run(lockName(record.kind, record.name), async () => {
      // The scope again, now that nothing else changes the service: a link made meanwhile may have put it out of reach.
      this.#recheck(record, options.caller, `${record.kind}:unlink`);
      const current = this.#state.services.require(record.kind, record.name);
      const link = current.links.find((l) => l.app === app);
      if (!link) throw new UserError('not_linked', `${record.kind} service ${record.name} is not linked to ${app}`, { hint: `\`${record.kind}:info ${record.name}\` shows its links` });
      const variable = `${link.alias}_URL`;
      options.out.step(`Unlinking ${record.kind} service ${record.name} from ${app} (${variable})`);
      if (this.#state.apps.get(app)?.config[variable] !== undefined) {
        await this.#locks.exclusive(app, options.out, () => changeConfig(this.#orchestrator, app, { unset: [variable] }, { restart: true, by: options.caller.by, out: options.out }));
      }
      await this.#orchestrator.services.unlink(current, app);
      await this.#state.services.update(record.kind, record.name, (d) => void (d.links = d.links.filter((l) => l.app !== app)));
      log.info('service_unlinked', { service: `${record.kind}/${record.name}`, app, by: options.caller.by });
    });
  }

  /** Publishes the service's port on the host (admins only): the container is recreated on its volume. */
  expose(record: ServiceRecord, port: number | undefined, caller: ServiceCaller, out: Output, host?: string): Promise<void> {
    return this.#locks.run(lockName(record.kind, record.name), async () => {
      const taken = port && this.#state.services.list().find((s) => s.exposedPort === port && !(s.kind === record.kind && s.name === record.name));
      if (taken) throw new UserError('port_taken', `port ${port} is already exposed by ${taken.kind} service ${taken.name}`);
      const updated = await this.#state.services.update(record.kind, record.name, (d) => {
        if (port) d.exposedPort = port;
        else delete d.exposedPort;
        if (port && host) d.exposedHost = host;
        else delete d.exposedHost;
      });
      try {
        await this.#orchestrator.services.restart(updated, out);
      } catch (e) {
        // The port may be in use on the host: the service comes back as it was.
        await this.#state.services.update(record.kind, record.name, (d) => {
          if (record.exposedPort) d.exposedPort = record.exposedPort;
          else delete d.exposedPort;
          if (record.exposedHost) d.exposedHost = record.exposedHost;
          else delete d.exposedHost;
        });
        await this.#orchestrator.services.restart(this.#state.services.require(record.kind, record.name), out).catch(() => undefined);
        throw e;
      }
      log.info(port ? 'service_exposed' : 'service_unexposed', { service: `${record.kind}/${record.name}`, port, ...(port ? { host: host ?? EXPOSED_HOST_DEFAULT } : {}), by: caller.by });
    });
  }

  /** The service's client on the caller's streams (a terminal with `ssh -t`, else SQL or commands on stdin); its exit status. */
  async connect(record: ServiceRecord, io: ConnectIo): Promise<number> {
    return connect(await this.#handle(record), io);
  }

  /** Streams the service's dump to `out`; the bytes written. */
  async exportTo(record: ServiceRecord, out: Writable, signal?: AbortSignal): Promise<number> {
    const bytes = await exportData(await this.#handle(record), out, signal);
    log.info('service_exported', { service: `${record.kind}/${record.name}`, bytes });
    return bytes;
  }

  /** Loads a dump from `input` into the service, replacing what it holds (one import, restore or restart at a time). */
  importFrom(record: ServiceRecord, input: Readable, options: { caller: ServiceCaller; progress?: (data: Buffer) => void | Promise<void>; signal?: AbortSignal }): Promise<void> {
    return this.#locks.run(lockName(record.kind, record.name), async () => {
      // The scope again, now that nothing else changes the service: a link made meanwhile may have put it out of reach.
      this.#recheck(record, options.caller, `${record.kind}:import`);
      await importData(await this.#handle(record), input, { ...(options.progress ? { progress: options.progress } : {}), ...(options.signal ? { signal: options.signal } : {}) });
      log.info('service_imported', { service: `${record.kind}/${record.name}`, by: options.caller.by });
    });
  }

  /** A backup now, into DATA/services/KIND/NAME/backups (the newest ones kept). */
  backup(record: ServiceRecord, signal?: AbortSignal): Promise<BackupFile> {
    return this.#locks.run(lockName(record.kind, record.name), async () => backup(await this.#handle(record), this.#backups(record), new Date(), signal));
  }

  /** The service's backups, newest first, and when the next scheduled one is due. */
  async backups(record: ServiceRecord): Promise<{ files: BackupFile[]; keep: number; schedule: string | undefined; next: Date | undefined }> {
    const store = this.#backups(record);
    const current = this.#state.services.require(record.kind, record.name);
    return { files: await store.list(), keep: store.keep, schedule: current.backupSchedule, next: this.#scheduler.nextRunOf(scheduleKey(record)) };
  }

  /** Imports backup `name` into the service. */
  restoreBackup(record: ServiceRecord, name: string, options: { caller: ServiceCaller; progress?: (data: Buffer) => void | Promise<void>; signal?: AbortSignal }): Promise<BackupFile> {
    return this.#locks.run(lockName(record.kind, record.name), async () => {
      // The scope again, now that nothing else changes the service: a link made meanwhile may have put it out of reach.
      this.#recheck(record, options.caller, `${record.kind}:backup-restore`);
      const file = await restore(await this.#handle(record), this.#backups(record), name, { ...(options.progress ? { progress: options.progress } : {}), ...(options.signal ? { signal: options.signal } : {}) });
      log.info('service_backup_restore', { service: `${record.kind}/${record.name}`, file: file.name, by: options.caller.by });
      return file;
    });
  }

  /** Backs the service up on a 5-field cron schedule (UTC), kept in its record; undefined stops it. When the next one is due. */
  async setBackupSchedule(record: ServiceRecord, cron: string | undefined, caller: ServiceCaller): Promise<Date | undefined> {
    const key = scheduleKey(record);
    // The scheduler checks the expression first: a bad one is refused before it is stored.
    const next = cron === undefined ? undefined : this.#scheduler.set(key, cron, (signal) => this.#scheduledBackup(record, signal));
    if (cron === undefined) this.#scheduler.remove(key);
    await this.#state.services.update(record.kind, record.name, (d) => {
      if (cron === undefined) delete d.backupSchedule;
      else d.backupSchedule = cron;
    });
    log.info('service_backup_scheduled', { service: key, cron: cron ?? null, by: caller.by });
    return next;
  }

  /** Arms the stored backup schedules; the control plane calls it once services are adopted. */
  startBackups(): void {
    for (const record of this.#state.services.list()) {
      if (!record.backupSchedule) continue;
      try {
        this.#scheduler.set(scheduleKey(record), record.backupSchedule, (signal) => this.#scheduledBackup(record, signal));
      } catch (e) {
        log.error('service_backup_schedule_unreadable', { service: scheduleKey(record), cron: record.backupSchedule, error: e });
      }
    }
    this.#scheduler.start();
  }

  /** Starts no more backups; waits for the ones running. */
  stopBackups(): Promise<void> {
    return this.#scheduler.stop();
  }

  async #scheduledBackup(record: ServiceRecord, signal: AbortSignal): Promise<void> {
    const current = this.#state.services.get(record.kind, record.name);
    if (!current) return this.#scheduler.remove(scheduleKey(record));
    const file = await this.backup(current, signal);
    log.info('service_backup_scheduled_done', { service: scheduleKey(record), file: file.name, bytes: file.bytes });
  }

  #backups(record: ServiceRecord): BackupStore {
    return new BackupStore(path.join(this.#state.services.dir(record.kind, record.name), 'backups'));
  }

  /** What data-ops acts on: the running container, and how to restart it (an import that replaces the data file). */
  async #handle(record: ServiceRecord): Promise<ServiceHandle> {
    const services = this.#orchestrator.services;
    const current = this.#state.services.require(record.kind, record.name);
    return {
      engine: this.#orchestrator.engine,
      container: (await services.requireRunning(current)).id,
      kind: services.kind(current.kind),
      service: await services.view(current),
      restart: async () => {
        await services.restart(current, new StreamOutput(() => {}));
        return (await services.requireRunning(current)).id;
      },
      current: async () => (await services.container(current))?.id,
    };
  }

  private async runningContainerOrAny(record: ServiceRecord): Promise<string> {
    const c = await this.#orchestrator.services.container(record);
    if (!c) throw new UserError('service_not_running', `${record.kind} service ${record.name} has no container`, { hint: `start it with \`${record.kind}:restart ${record.name}\`` });
    return c.id;
  }
}

/**
 * Whether a key may manage a service: an admin key (or the local operator) any; a key limited to
 * apps one linked only to its apps, or one it created that is not linked yet. A service shared
 * with an app outside its scope is the admin's.
 */
export function mayManage(state: Pick<State, 'apps'>, record: ServiceRecord, key: KeyRecord | undefined): boolean {
  if (!key?.apps) return true;
  if (record.links.length === 0) return record.createdByKey === key.fingerprint;
  return record.links.every((l) => scopeAllows(key, l.app, state.apps.get(l.app)));
}

function authorizeService(state: State, record: ServiceRecord, caller: ServiceCaller, command: string): void {
  const { key } = caller;
  if (!key || mayManage(state, record, key)) return;
  log.warn('command_refused', { key: key.name, command, service: `${record.kind}/${record.name}`, reason: 'service_scope' });
  throw new UserError('forbidden', `key "${key.name}" may not run ${command} on ${record.kind} service ${record.name}: it is not linked to the apps the key is limited to only (${scopeNames(key.apps ?? [], (id) => state.apps.byId(id)?.name).join(', ')})`);
}

function scheduleKey(record: Pick<ServiceRecord, 'kind' | 'name'>): string {
  return `${record.kind}/${record.name}`;
}

/** The lock of a service, the one the service manager takes too. */
const lockName = serviceLockName;
