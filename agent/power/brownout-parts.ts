/**
 * What the brownout's steps (brownout.ts) act on, each a narrow view that one part offers: the log, replication
 * (so nothing reaches into its publisher), the role and the application; and the handoff record they publish.
 * Declarations only, kept apart so that brownout.ts reads as the sequence.
 */
import type { Clock, Logger } from '../util/index.ts';
import type { PowerStateName } from './machine.ts';

/** The handoff record (replication's leader record of kind "handoff"). */
export interface HandoffRecord {
  readonly group: string;
  readonly kind: 'handoff';
  readonly epoch: number;
  readonly node: string;
  readonly to?: string;
  readonly lastSeq: number;
  readonly committed: number;
  readonly complete: boolean;
  /** Incomplete by the budget: the ms of budget left, for which the tail goes on behind the record. */
  readonly tailMs?: number;
  readonly sqlite?: Readonly<Record<string, number>>;
  readonly reason: string;
  readonly atMs: number;
}

/** What the brownout does to the flash log (log/FlashLog offers it). */
export interface BrownoutLog {
  readonly epoch: number;
  watermarks(): { readonly committed: number; readonly replicated: number };
  setSyncMode(mode: 'immediate' | 'batched'): void;
  fence(code: 'HANDING_OFF', message: string): Promise<number>;
  unfence(): void;
  syncWatermarks(): Promise<void>;
  /** How long its recent fdatasyncs took at most (ms); undefined before the first. */
  recentSyncMsMax(): number | undefined;
}

/** What it asks of replication (replication/Replication offers it, so nothing reaches into the publisher). */
export interface BrownoutReplication {
  beginFlush(budgetMs: number): void;
  endFlush(): void;
  setOnBattery(onBattery: boolean): void;
  handoffLeadMs(): number | undefined;
  waitReplicated(seq: number, timeoutMs: number, signal: AbortSignal): Promise<boolean>;
  siblingPositions(): Readonly<Record<string, number>>;
  publishHandoff(record: HandoffRecord): Promise<void>;
  publishPowerNow(status: object): Promise<void>;
  abort(): Promise<void>;
}

/** What it asks of the role (takeover/RoleManager offers it). */
export interface BrownoutRoles {
  readonly role: string;
  latchHandoff(record: HandoffRecord): Promise<void>;
  latch(reason: string): void;
  waitForSuccessor(timeoutMs: number): Promise<boolean>;
}

/** What runs only on the primary (app/): stopped before the fence, started again if mains returns first. */
export interface BrownoutApplication {
  readonly app?: { stop(reason: string): Promise<void> };
  readonly forwarder?: { stop(reason: string, options?: { finalMark?: boolean }): Promise<void> };
  readonly sqlite?: { captureFinal(roomWaitMs?: number): Promise<Record<string, number>> };
  /** Mains came back before the handoff and this node is still the primary: start the application and the forwarder. */
  restart(): void;
}

export interface BrownoutOptions {
  log: BrownoutLog;
  replication: BrownoutReplication;
  roles: BrownoutRoles;
  application: BrownoutApplication;
  /** The power machine's state (supervisor.ts), ONLINE without a power source. */
  powerState(): PowerStateName;
  group: string;
  node: string;
  siblings: readonly string[];
  /** power.restartAfterPowerOffMs: how long after the handoff a node whose power never went exits. */
  restartAfterPowerOffMs: number;
  /** Publish this node's "handed-off" state record (the agent composes its state records). */
  publishHandedOff(): Promise<void>;
  /** The power source's last status, for the last power record. */
  lastPowerStatus(): object | undefined;
  /** The flushDone and handoff hooks (config hooks). */
  hooks: { fire(event: 'flushDone' | 'handoff', fields: Readonly<Record<string, string | number | boolean | undefined>>): void };
  /** The flush-time histogram of GET /metrics. */
  flushSeconds: { observe(seconds: number): void };
  /** Ends the process (`lastgasp run` exits with this code so that systemd restarts it). */
  exit?: (code: number) => void;
  logger: Logger;
  clock: Clock;
}
