// The state every command works on (keys, apps), loaded from the data dir.
import type { Services } from './cli/command.ts';
import { dataPaths, type Config } from './config.ts';
import { KeyStore } from './git/key-store.ts';
import { AppLock } from './orchestrator/app-lock.ts';
import { AppStore } from './state/app-store.ts';

export async function loadServices(config: Config): Promise<Services> {
  const paths = dataPaths(config.dataDir);
  const keys = new KeyStore(paths.keys);
  await keys.load();
  const apps = new AppStore(paths.apps);
  await apps.load();
  return { config, paths, keys, apps, locks: new AppLock() };
}
