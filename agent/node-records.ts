/**
 * This node's records on the brokers, composed from the parts that know them: the retained state record
 * (role, power state, epoch, committed; published on every role and power change, as the roles' heartbeat,
 * as `offline` on a clean stop and as `handed-off` at the brownout's end) and the power record. The agent
 * wires it; replication carries what it composes.
 */
import type { PowerStatus } from '../firmware-bridge/index.ts';
import type { PowerStateName } from './power/index.ts';
import type { NodeStateName, Replication, StateMessage } from './replication/index.ts';
import type { Clock } from './util/index.ts';

/** The state record's name for each power state (wire.ts NodeStateName). */
export const STATE_NAMES: Record<PowerStateName, NodeStateName> = {
  ONLINE: 'online',
  ON_BATTERY: 'on-battery',
  BROWNOUT: 'flushing',
  FLUSHING: 'flushing',
  HANDED_OFF: 'handed-off',
  POWER_OFF: 'handed-off',
};

export interface NodeRecordsOptions {
  group: string;
  node: string;
  log: { readonly epoch: number; watermarks(): { readonly committed: number } };
  /** Undefined until the agent started replication. */
  replication(): Replication | undefined;
  /** The role, undefined until the roles exist. */
  role(): string | undefined;
  /** The power machine's state, undefined without a power source. */
  powerState(): PowerStateName | undefined;
  clock: Clock;
}

export class NodeRecords {
  constructor(private readonly options: NodeRecordsOptions) {}

  /** The state record's name now: the power machine's, online without a power source. */
  current(): NodeStateName {
    const power = this.options.powerState();
    return power ? STATE_NAMES[power] : 'online';
  }

  message(state: NodeStateName): StateMessage {
    const { group, node, log, clock } = this.options;
    const role = this.options.role();
    return {
      group,
      node,
      role: role === 'primary' || role === 'standby' ? role : 'unknown',
      state,
      epoch: log.epoch,
      committed: log.watermarks().committed,
      atMs: clock.nowMs(),
    };
  }

  /** The state record, when connected (a failed publish is the next one's to repair). */
  async publish(state: NodeStateName): Promise<void> {
    const replication = this.options.replication();
    if (!replication?.connected) return;
    await replication.publishState(this.message(state)).catch(() => undefined);
  }

  /** The state record now, past any pause (the heartbeat, the clean stop, the handoff's end). */
  publishNow(state: NodeStateName, atMs?: number): Promise<void> {
    const replication = this.options.replication();
    if (!replication) return Promise.resolve();
    const message = this.message(state);
    return replication.publishStateNow(atMs === undefined ? message : { ...message, atMs });
  }

  /** The roles' heartbeat: the current state record stamped `atMs`, when connected. */
  async heartbeat(atMs: number): Promise<void> {
    if (!this.options.replication()?.connected) return;
    await this.publishNow(this.current(), atMs);
  }

  /** The power record (retained when `changed`: a new power state). */
  power(status: PowerStatus, state: PowerStateName, changed = false): void {
    this.options.replication()?.publishPower({ node: this.options.node, state, ...status }, changed);
  }
}
