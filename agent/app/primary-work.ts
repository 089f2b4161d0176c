/**
 * What runs only while this node is the primary: the application (config `app:`, a command or a systemd
 * unit), the forwarder (mqttIngest.forward) and the capture of the application's SQLite databases. Role
 * changes start and stop it (agent/hosts.ts gives the roles their host over it); the brownout stops it
 * before the fence and restarts it when mains returns first (it is the brownout's BrownoutApplication).
 * The SQLite databases are asked through a narrow view, not imported: the agent wires them in.
 */
import type { AgentConfig } from '../config/index.ts';
import type { Clock, Logger } from '../util/index.ts';
import { AppRunner } from './app-runner.ts';
import type { Forwarder } from './forwarder.ts';
import { UnitRunner, unitEnvFile, type AppControl } from './unit-runner.ts';

/** The application's SQLite databases (sqlite/SqliteDatabases offers it). */
export interface PrimaryDatabases {
  becomePrimary(committed: number): Promise<void>;
  becomeStandby(): Promise<void>;
  captureFinal(roomWaitMs?: number): Promise<Record<string, number>>;
}

export interface PrimaryWorkOptions {
  app: AppControl | undefined;
  /** The forwarder, made once the agent started (it reads its position from the state). */
  forwarder(): Forwarder | undefined;
  sqlite: PrimaryDatabases | undefined;
  /** The key-value state: a new primary serves nothing before it holds every replicated entry. */
  state: { waitApplied(seq: number): Promise<void> };
  /** The log's committed seq, read at the moment each step needs it. */
  committed(): number;
  /** What the application is told at each start (appEnvironment below, with this moment's values). */
  environment(): Record<string, string>;
}

export class PrimaryWork {
  constructor(private readonly options: PrimaryWorkOptions) {}

  get app(): AppControl | undefined {
    return this.options.app;
  }

  get forwarder(): Forwarder | undefined {
    return this.options.forwarder();
  }

  get sqlite(): PrimaryDatabases | undefined {
    return this.options.sqlite;
  }

  /** Before the role flips: a primary's state includes every replicated entry before its first write is served. */
  async prepare(role: 'primary' | 'standby'): Promise<void> {
    const { state, sqlite, committed } = this.options;
    if (role === 'primary') {
      await state.waitApplied(committed());
      // The databases as of the last replicated commit, and captured from here, before the application starts.
      await sqlite?.becomePrimary(committed());
    } else {
      await sqlite?.becomeStandby();
    }
  }

  /** This node leads: start the application and the forwarder. */
  start(): void {
    this.options.app?.start(() => this.options.environment());
    this.forwarder?.start();
  }

  /** Mains came back before the handoff and this node is still the primary (the brownout's restart). */
  restart(): void {
    this.start();
  }

  /** Stop both at once; with finalMark the forwarder writes its last position first (a primary standing down). */
  async stop(reason: string, options: { finalMark?: boolean } = {}): Promise<void> {
    await Promise.all([this.options.app?.stop(reason), this.forwarder?.stop(reason, options)]);
  }
}

/** What the application is told at each start: who and where it is, and how far the state it reads goes. */
export function appEnvironment(config: AgentConfig, now: { epoch: number; apiAddress: string | undefined; applied: number; tokenFile: string }): Record<string, string> {
  return {
    LASTGASP_NODE: config.node,
    LASTGASP_GROUP: config.group,
    LASTGASP_EPOCH: String(now.epoch),
    LASTGASP_API: now.apiAddress ?? config.api.listen,
    ...(config.api.listen.startsWith('unix:') ? {} : { LASTGASP_API_TOKEN_FILE: now.tokenFile }),
    LASTGASP_APPLIED_SEQ: String(now.applied),
  };
}

/** The application the config names (`app.command` or `app.unit`), or none. */
export function createAppControl(config: AgentConfig, logger: Logger, clock: Clock): AppControl | undefined {
  const app = config.app;
  const restart = { stopTimeoutMs: app.stopTimeoutMs, restartDelayMs: app.restartDelayMs, restartDelayMsMax: app.restartDelayMsMax };
  if (app.command) {
    return new AppRunner({ command: app.command, env: app.env, cwd: app.cwd ?? config.dataDir, ...restart, stableMs: app.stableMs, logger: logger.child('agent:app:run'), clock });
  }
  if (app.unit) {
    return new UnitRunner({ unit: app.unit, user: app.user, envFile: unitEnvFile(config.dataDir), ...restart, pollMs: app.pollMs, logger: logger.child('agent:app:unit'), clock });
  }
  return undefined;
}
