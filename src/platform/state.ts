// The state every command works on (keys, apps, domains, proxy settings), loaded from the data
// dir: all a command needs that runs without the daemon.
import { dataPaths, type Config, type DataPaths } from '../config.ts';
import { KeyStore } from '../git/key-store.ts';
import { AllowedStacksStore } from '../state/allowed-stacks-store.ts';
import { AppStore } from '../state/app-store.ts';
import { DomainStore } from '../state/domain-store.ts';
import { ProxySettingsStore } from '../state/proxy-settings-store.ts';
import { ServiceStore } from '../state/service-store.ts';
import { SERVICE_KINDS } from '../services/kinds/index.ts';

export interface State {
  config: Config;
  paths: DataPaths;
  keys: KeyStore;
  apps: AppStore;
  domains: DomainStore;
  /** Per-app proxy limits (state/proxy.json). */
  proxySettings: ProxySettingsStore;
  /** Images every app may build on or deploy (state/allowed-stacks.json). */
  allowedStacks: AllowedStacksStore;
  /** Backing services (state/services.json, passwords under services/). */
  services: ServiceStore;
}

/** The state on disk; `reuse.keys`, a key store already in use (the SSH server's), is read again rather than made anew. */
export async function loadState(config: Config, reuse: { keys?: KeyStore } = {}): Promise<State> {
  const paths = dataPaths(config.dataDir);
  // Apps first: a keys.json from before scopes held app ids is migrated with them.
  const apps = new AppStore(paths.apps);
  await apps.load();
  const keys = reuse.keys ?? new KeyStore(paths.keys);
  await keys.load({ appIdOf: (name) => apps.get(name)?.id });
  const domains = new DomainStore(paths.domains, { domain: config.domain, apps: () => apps.list().map((a) => a.name), maxDomains: config.maxAppDomains });
  await domains.load();
  const proxySettings = new ProxySettingsStore(paths.proxySettings);
  await proxySettings.load();
  const allowedStacks = new AllowedStacksStore(paths.allowedStacks);
  await allowedStacks.load();
  const services = new ServiceStore(paths.services, paths.serviceData, { kinds: SERVICE_KINDS.map((k) => k.name) });
  await services.load();
  return { config, paths, keys, apps, domains, proxySettings, allowedStacks, services };
}
