/**
 * The databases of `app.sqlite`, following this node's role: on the primary each one's capture copies its
 * WAL into the log; on a standby each one's replica applies the log to its file. The agent calls these at
 * its role changes and in the brownout flush; nothing else touches the files.
 */
import { basename, extname } from 'node:path';
import type { FlashLog } from '../log/index.ts';
import { LastgaspError, type Clock, type Logger } from '../util/index.ts';
import { SqliteCapture } from './capture.ts';
import { checkDatabase } from './checks.ts';
import { openSqlite } from './connection.ts';
import { SqliteReplica } from './replica.ts';

export interface SqliteDatabaseConfig {
  path: string;
  name?: string | undefined;
  pollMs: number;
  copyIntervalMs?: number;
  applyIntervalMs?: number;
  checkpointFrames: number;
  walBytesMax?: number;
}

export interface SqliteDatabasesOptions {
  databases: readonly SqliteDatabaseConfig[];
  node: string;
  dataDir: string;
  entryBytesMax: number;
  log: FlashLog;
  logger: Logger;
  clock: Clock;
}

interface Database {
  readonly capture: SqliteCapture;
  readonly replica: SqliteReplica;
}

/** While the final capture waits for room in a full log: a look again at least this often, or at each replicated mark. */
const ROOM_RETRY_MS = 20;

export function sqliteName(config: SqliteDatabaseConfig): string {
  return config.name ?? basename(config.path, extname(config.path));
}

export class SqliteDatabases {
  private readonly databases: Database[];
  private role: 'primary' | 'standby' | undefined;

  constructor(private readonly options: SqliteDatabasesOptions) {
    this.databases = options.databases.map((config, index) => {
      const name = sqliteName(config);
      const logger = options.logger.child(`agent:sqlite:${name}`);
      return {
        capture: new SqliteCapture({
          path: config.path,
          name,
          field: `app.sqlite[${index}]`,
          node: options.node,
          pollMs: config.pollMs,
          copyIntervalMs: config.copyIntervalMs,
          checkpointFrames: config.checkpointFrames,
          entryBytesMax: options.entryBytesMax,
          append: async (payloads) => (await options.log.appendMany(payloads)).seq,
          appendRoom: () => options.log.appendRoom(),
          logCaughtUp: () => options.log.watermarks().replicated >= options.log.watermarks().committed,
          walBytesMax: config.walBytesMax,
          logger,
          clock: options.clock,
          resume: { dataDir: options.dataDir, log: options.log },
        }),
        replica: new SqliteReplica({ path: config.path, name, dataDir: options.dataDir, log: options.log, logger, clock: options.clock, applyIntervalMs: config.applyIntervalMs }),
      };
    });
  }

  /**
   * Check each database now (refusing to start with the fix named: checks.ts) and read each replica's
   * position. Loading SQLite here also makes a missing driver an error at start, not at the first takeover.
   */
  async load(): Promise<void> {
    const probe = await openSqlite(':memory:', false);
    const version = String(probe.get('SELECT sqlite_version() AS v')?.v);
    probe.close();
    for (const [index, config] of this.options.databases.entries()) {
      const check = await checkDatabase(config.path, `app.sqlite[${index}].path`, version, config);
      for (const warning of check.warnings) this.options.logger.warn(`sqlite ${sqliteName(config)}: ${warning}`, { event: 'sqlite-warning', db: sqliteName(config) });
      this.options.logger.info(`sqlite ${sqliteName(config)}: ${config.path} (SQLite ${version} in the agent)`, { event: 'sqlite-check', db: sqliteName(config), exists: check.exists, pageBytes: check.pageBytes, fsType: check.fsType, sqliteVersion: version });
    }
    for (const database of this.databases) await database.replica.load();
  }

  /** Before the application starts here: each file as of the log's `committed`, then captured from there. */
  async becomePrimary(committed: number): Promise<void> {
    if (this.role === 'primary') return;
    this.role = 'primary';
    for (const { replica, capture } of this.databases) {
      await replica.handOverAt(committed);
      capture.start();
    }
  }

  /** The application is stopped: stop capturing, and follow the primary's files. */
  async becomeStandby(): Promise<void> {
    if (this.role === 'standby') return;
    this.role = 'standby';
    for (const { replica, capture } of this.databases) {
      await capture.stop();
      await replica.resume();
    }
  }

  /**
   * The brownout flush, once the application has stopped: every transaction it committed goes into the log.
   * Returns each database's last commit as a log seq. A full log (LOG_FULL: the tail not yet replicated) is
   * waited out for up to `roomWaitMs` while the flush replicates the tail, which makes room; past that the
   * refusal is thrown, and the handoff names no commit for these databases.
   */
  async captureFinal(roomWaitMs = 0): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    if (this.role !== 'primary') return out;
    const untilMs = this.options.clock.monotonicMs() + roomWaitMs;
    for (const { capture } of this.databases) out[capture.status().name as string] = await this.captureWithRoom(capture, untilMs);
    return out;
  }

  private async captureWithRoom(capture: SqliteCapture, untilMs: number): Promise<number> {
    const { clock, log } = this.options;
    for (;;) {
      try {
        return await capture.captureNow();
      } catch (error) {
        if (!(error instanceof LastgaspError && error.code === 'LOG_FULL') || clock.monotonicMs() >= untilMs) throw error;
      }
      await new Promise<void>((resolve) => {
        const timer = clock.setTimeout(done, Math.min(ROOM_RETRY_MS, Math.max(0, untilMs - clock.monotonicMs())));
        const unsubscribe = log.onReplicated(done);
        function done() {
          timer.cancel();
          unsubscribe();
          resolve();
        }
      });
    }
  }

  async stop(): Promise<void> {
    for (const { replica, capture } of this.databases) {
      await capture.stop();
      await replica.pause();
    }
  }

  /**
   * The first seq the standby's replicas still have to read (Infinity on a primary, or with none behind): a
   * standby's retention keeps it, so that a replica held back by its readers is not overtaken by retention
   * and left waiting for the primary's next snapshot.
   */
  neededFrom(): number {
    if (this.role !== 'standby') return Infinity;
    return Math.min(Infinity, ...this.databases.map(({ replica }) => replica.position + 1));
  }

  status(): Array<Record<string, unknown>> {
    return this.databases.map(({ capture, replica }) => (this.role === 'primary' ? capture.status() : replica.status()));
  }
}
