/**
 * The rules every write follows, whether it comes through the HTTP API, the library, MQTT ingest or the
 * forwarder, one entry or a batch: may this node write (NOT_PRIMARY, LEASE_LOST, HANDING_OFF), does the
 * entry fit (ENTRY_TOO_LARGE), may it still acknowledge once the entry is on flash, and, when the write asked
 * for it (or the config says so), has its copy been made (copy-wait.ts); and the same rules read as the API's
 * readiness (GET /v1/ready). The role and the brownout are asked, not imported: the agent wires them in.
 */
import { statfs } from 'node:fs/promises';
import type { AppendResult } from '../log/index.ts';
import { LastgaspError, isLastgaspError, type Clock, type ErrorCode } from '../util/index.ts';
import type { CopyOptions } from './copy-wait.ts';
import type { BatchResult, Readiness } from './http-api.ts';
import { encodeOp, type Op } from './ops.ts';

/** Why this node may not acknowledge a write now (takeover/roles.ts refusal()). */
export interface WriteRefusal {
  readonly code: ErrorCode;
  readonly message: string;
  readonly leader?: string;
}

/** What the rules ask of the role (takeover/RoleManager offers it). */
export interface WriteRoles {
  readonly role: string;
  refusal(): WriteRefusal | undefined;
  readonly leaderRecord: { readonly epoch: number; readonly node: string } | undefined;
}

export interface WriteRulesOptions {
  log: {
    append(payload: Uint8Array): Promise<AppendResult>;
    appendMany(payloads: readonly Uint8Array[]): Promise<AppendResult>;
    /** Why the log took itself out of service, if it did (a faulted log is never ready). */
    status(): { readonly fault?: string | undefined };
  };
  /** Waits, when asked, until the entry's copy is made (copy-wait.ts). */
  copies: { wait(seq: number, options: CopyOptions | undefined): Promise<void> | undefined };
  node: string;
  siblings: readonly string[];
  /** log.entryBytesMax */
  entryBytesMax: number;
  /** Where the log's segments go, and their size: readiness asks whether one fits again after LOG_NO_SPACE. */
  dataDir: string;
  segmentBytes: number;
  /** The role, undefined while the agent starts (no write is taken before it is known). */
  roles(): WriteRoles | undefined;
  /** The brownout began (power/brownout.ts): writes are refused, except the forwarder's last position. */
  handingOff(): boolean;
  appendSeconds: { observe(seconds: number): void };
  clock: Clock;
}

export class WriteRules {
  /** Set by an append that failed for want of disk space, cleared by the next that succeeds. */
  private noSpace = false;

  constructor(private readonly options: WriteRulesOptions) {}

  append(op: Op, copy?: CopyOptions): Promise<AppendResult> {
    return this.write(copy, () => {
      const payload = encodeOp(op);
      const entryBytesMax = this.options.entryBytesMax;
      if (payload.length > entryBytesMax) {
        throw new LastgaspError('ENTRY_TOO_LARGE', `entry of ${payload.length} bytes is over log.entryBytesMax (${entryBytesMax})`, { bytes: payload.length });
      }
      return this.options.log.append(payload);
    });
  }

  /** Many entries in one log batch (one group commit): every one of them acknowledged, or none. */
  async appendEncoded(payloads: readonly Uint8Array[], copy?: CopyOptions): Promise<BatchResult> {
    const last = await this.write(copy, () => this.options.log.appendMany(payloads));
    return { firstSeq: last.seq - payloads.length + 1, lastSeq: last.seq, epoch: last.epoch };
  }

  /**
   * The forwarder's position (forwarder.ts): an ordinary write, except that it is still taken while handing
   * off, up to the fence, so that the last position lands in the tail the sibling receives.
   */
  appendForwardMark(op: Op): Promise<AppendResult> {
    if (!this.options.handingOff()) return this.append(op);
    this.refuse(false);
    return this.options.log.append(encodeOp(op));
  }

  /**
   * Accepting writes, or why not. Each check is one line, in the order an operator should read them; a
   * faulted log is never ready, whatever the role.
   */
  async readiness(): Promise<Readiness> {
    const { node, siblings, dataDir, segmentBytes } = this.options;
    const roles = this.options.roles();
    const role = roles?.role ?? 'starting';
    if (role === 'starting') return notReady('STARTING', 'the agent is opening its log and deciding its role');
    const fault = this.options.log.status().fault;
    if (fault) return notReady('LOG_FAULT', fault);
    if (role !== 'primary') return notReady('STANDBY', `this node (${node}) is a standby; write to the primary${roles?.leaderRecord ? ` (${roles.leaderRecord.node})` : ''}`);
    if (this.options.handingOff()) return notReady('HANDING_OFF', `power is failing and this node hands off to ${siblings.join(' or ')}`);
    const refusal = roles?.refusal();
    if (refusal) return notReady(refusal.code, refusal.message);
    if (await this.outOfSpace()) return notReady('LOG_NO_SPACE', `the file system of ${dataDir} has no room for a new log segment (${segmentBytes} bytes); free space there`);
    return { ready: true };
  }

  /** This node acknowledges writes now: it knows its role, nothing refuses them, and it is not handing off. */
  serving(): boolean {
    const roles = this.options.roles();
    return roles !== undefined && roles.refusal() === undefined && !this.options.handingOff();
  }

  /** An append failed for want of disk space and the volume still has no room for a new segment. */
  private async outOfSpace(): Promise<boolean> {
    if (!this.noSpace) return false;
    const { dataDir, segmentBytes } = this.options;
    const stats = await statfs(dataDir).catch(() => undefined);
    const room = stats !== undefined && stats.bavail * stats.bsize >= segmentBytes;
    if (room) this.noSpace = false;
    return !room;
  }

  private async write(copy: CopyOptions | undefined, store: () => Promise<AppendResult>): Promise<AppendResult> {
    const { clock, siblings } = this.options;
    const startedMs = clock.monotonicMs();
    this.refuse(false);
    if (this.options.handingOff()) {
      throw new LastgaspError('HANDING_OFF', `power is failing and this node is handing off to its sibling; retry against ${siblings.join(' or ')}`, { siblings });
    }
    try {
      const result = await store();
      this.noSpace = false;
      // Stored, but acknowledged only if this node still may: a demotion that began meanwhile sets the entry
      // aside, and a lease that ran out meanwhile means a standby may already lead.
      this.refuse(true);
      await this.options.copies.wait(result.seq, copy);
      this.options.appendSeconds.observe((clock.monotonicMs() - startedMs) / 1000);
      return result;
    } catch (error) {
      if (isLastgaspError(error, 'LOG_NO_SPACE')) this.noSpace = true;
      throw error;
    }
  }

  /** Throws the typed refusal when this node may not acknowledge a write (afterAppend: the entry is on flash). */
  private refuse(afterAppend: boolean): void {
    const roles = this.options.roles();
    const refusal = roles ? roles.refusal() : { code: 'NOT_PRIMARY' as const, message: `this node (${this.options.node}) is starting`, leader: undefined };
    if (!refusal || (afterAppend && refusal.code === 'HANDING_OFF')) return;
    const message = afterAppend ? `${refusal.message} (the entry was stored here but is not acknowledged: it may be set aside)` : refusal.message;
    throw new LastgaspError(refusal.code, message, { leader: refusal.leader, epoch: roles?.leaderRecord?.epoch });
  }
}

function notReady(reason: string, message: string): Readiness {
  return { ready: false, reason, message };
}
