// The state every command works on (keys, apps, domains), loaded from the data dir.
import type { Services } from './cli/command.ts';
import { dataPaths, type Config } from './config.ts';
import { KeyStore } from './git/key-store.ts';
import { AppLock } from './orchestrator/app-lock.ts';
import { AppStore } from './state/app-store.ts';
import { DomainStore } from './state/domain-store.ts';
import { ProxySettingsStore } from './state/proxy-settings-store.ts';

export async function loadServices(config: Config): Promise<Services> {
  const paths = dataPaths(config.dataDir);
  const keys = new KeyStore(paths.keys);
  await keys.load();
  const apps = new AppStore(paths.apps);
  await apps.load();
  const domains = new DomainStore(paths.domains, { domain: config.domain, apps: () => apps.list().map((a) => a.name) });
  await domains.load();
  const proxySettings = new ProxySettingsStore(paths.proxySettings);
  await proxySettings.load();
  return { config, paths, keys, apps, domains, proxySettings, locks: new AppLock() };
}
