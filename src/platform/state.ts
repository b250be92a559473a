// The state every command works on (keys, apps, domains, proxy settings), loaded from the data
// dir: all a command needs that runs without the daemon.
import { dataPaths, type Config, type DataPaths } from '../config.ts';
import { KeyStore } from '../git/key-store.ts';
import { AllowedStacksStore } from '../state/allowed-stacks-store.ts';
import { AppStore } from '../state/app-store.ts';
import { DomainStore } from '../state/domain-store.ts';
import { ProxySettingsStore } from '../state/proxy-settings-store.ts';

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
}

export async function loadState(config: Config): Promise<State> {
  const paths = dataPaths(config.dataDir);
  const keys = new KeyStore(paths.keys);
  await keys.load();
  const apps = new AppStore(paths.apps);
  await apps.load();
  const domains = new DomainStore(paths.domains, { domain: config.domain, apps: () => apps.list().map((a) => a.name) });
  await domains.load();
  const proxySettings = new ProxySettingsStore(paths.proxySettings);
  await proxySettings.load();
  const allowedStacks = new AllowedStacksStore(paths.allowedStacks);
  await allowedStacks.load();
  return { config, paths, keys, apps, domains, proxySettings, allowedStacks };
}
