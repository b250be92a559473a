// What berth knows of one kind of backing service (postgres, redis): its image and how that image
// is configured, the URL an app gets, and the processes run inside its container to check it,
// connect to it, and move its data out and in. A new kind is one more module like postgres.ts
// and one line in index.ts; nothing else branches on the kind.

/** The parts of a service's record a kind reads. */
export interface ServiceRecordView {
  kind: string;
  name: string;
  /** Generated, 32+ url-safe characters. */
  password: string;
}

/** A process run inside the service's container (Engine.exec). Secrets go in `env`, never in `cmd`. */
export interface KindCommand {
  cmd: string[];
  env?: string[];
  /** The container's user when absent. */
  user?: string;
}

/**
 * An import that replaces the server's data files (redis's RDB): data-ops receives the input
 * into a file next to them, checks it, makes the server leave its files alone, swaps the input
 * in (the previous files kept aside) and restarts the server, which loads it; the previous
 * files go once it runs, or come back when it does not.
 */
export interface DataFileImport {
  readonly replace: 'data-file';
  /** The data file, in the container. */
  file: string;
  /** Who owns it (the server's user). */
  user: string;
  /** Exits 0 when the file at `path` is a data file the server can load. */
  check(path: string): KindCommand;
  /** Makes the running server write nothing to its data files until it stops (no snapshot, none on shutdown). */
  hold: KindCommand;
  /**
   * Puts the checked file at `path` in place as the data the server loads at its next start,
   * keeping what was there aside (the server's user runs it).
   */
  swap(path: string): KindCommand;
  /** Once the server runs on the imported data: removes what `swap` kept aside. */
  dropPrevious: KindCommand;
  /** When the server does not come up on the imported data: puts back what `swap` kept aside. */
  restorePrevious: KindCommand;
}

/**
 * An import whose input is received whole into a file in the container before anything loads
 * it (postgres's plain SQL: psql commits at end of input, and an input cut off part way ends
 * like a whole one). The file is loaded only after a clean end of input, and removed after.
 */
export interface StagedImport {
  readonly stage: 'file';
  /** A folder of the container the loading user can write and read. */
  dir: string;
  /** Who receives and loads it. */
  user: string;
  /** Loads the file at `path`; exits non-zero (changing nothing) when it fails. */
  load(path: string): KindCommand;
}

export interface ServiceKind {
  /** `postgres`, `redis`: the commands' noun. */
  readonly name: string;
  /** The config key a link sets by default: DATABASE_URL, REDIS_URL (`--alias X` sets X_URL). */
  readonly urlVariable: string;
  /** The official image, pulled on first use: postgres:17, redis:7. */
  readonly defaultImage: string;
  readonly port: number;
  /** Where the volume is mounted in the container. */
  readonly dataDir: string;
  /** What a backup file's name ends with: `.dump`, `.rdb`. */
  readonly dumpExtension: string;
  /** The container's environment (`NAME=value`), honouring the official image's contract. */
  containerEnv(service: ServiceRecordView): string[];
  /**
   * The container's command; undefined keeps the image's. Like the container's environment it is
   * shown by `docker inspect` (root's, as the engine's API is) and readable inside the container:
   * a server that takes its password as an argument (redis's --requirepass) has it there, as
   * postgres has POSTGRES_PASSWORD in its environment. Processes run in it (KindCommand) keep
   * secrets in their environment, off the process list.
   */
  containerCommand(service: ServiceRecordView): string[] | undefined;
  /** The URL an app gets for a service reachable at `host` (the service's network alias). */
  url(service: ServiceRecordView, host: string): string;
  /** Exits 0 once the server accepts connections from other containers. */
  readyCommand(service: ServiceRecordView): KindCommand;
  /** Prints the server's version on stdout (for info). */
  versionCommand(service: ServiceRecordView): KindCommand;
  /** The client (psql, redis-cli): interactive on a terminal, or reading commands from stdin. */
  connectCommand(service: ServiceRecordView): KindCommand;
  /** Writes a dump on stdout (postgres: pg_dump's custom format; redis: an RDB snapshot). */
  exportCommand(service: ServiceRecordView): KindCommand;
  /**
   * How an input whose first bytes are `head` is imported: a process reading it on stdin
   * (postgres: pg_restore), a file staged then loaded (postgres's plain SQL), or the replacement
   * of the data file (redis).
   */
  importCommand(service: ServiceRecordView, head: Buffer): KindCommand | StagedImport | DataFileImport;
}
