/**
 * The host interfaces that the roles (takeover/RoleHost) and the power supervisor (power/SupervisorHost) call
 * back into, each an adapter over the parts the agent made, so that the agent itself implements none; and
 * the event hooks that role and power changes fire, with what each compares against (the last role, the last
 * power state, the quarantine files already reported).
 */
import type { Hooks } from './app/hooks.ts';
import type { PrimaryWork } from './app/primary-work.ts';
import { STATE_NAMES, type NodeRecords } from './node-records.ts';
import type { Brownout, PowerStateName, SupervisorHost, TailEnergy } from './power/index.ts';
import type { RoleHost } from './takeover/index.ts';
import type { NodeStateName } from './replication/index.ts';
import type { Logger } from './util/index.ts';

/** Fires the hooks of role, power and quarantine events, each only when something changed. */
export class HookEvents {
  private lastRole: 'primary' | 'standby' | undefined;
  private lastPowerState: PowerStateName = 'ONLINE';
  private quarantineFiles = 0;

  constructor(
    private readonly hooks: Hooks,
    private readonly quarantine: () => readonly string[],
  ) {}

  role(role: 'primary' | 'standby', info: { epoch: number; reason: string }): void {
    if (this.lastRole === 'standby' && role === 'primary') this.hooks.fire('takeover', { epoch: info.epoch, reason: info.reason });
    if (this.lastRole === 'primary' && role === 'standby') this.hooks.fire('demotion', { epoch: info.epoch, reason: info.reason });
    this.lastRole = role;
    this.quarantined(info.reason);
  }

  power(state: PowerStateName, reason: string): void {
    const from = this.lastPowerState;
    this.lastPowerState = state;
    if (state === 'ON_BATTERY') this.hooks.fire('powerLost', { from, reason });
    else if (state === 'ONLINE' && from !== 'ONLINE') this.hooks.fire('powerRestored', { from, reason });
    else if (state === 'BROWNOUT') this.hooks.fire('brownout', { from, reason });
  }

  /** The quarantine hook, when recovery or a demotion set entries aside since the last look. */
  quarantined(reason: string): void {
    const files = this.quarantine();
    if (files.length > this.quarantineFiles) this.hooks.fire('quarantine', { files: files.join(' '), reason });
    this.quarantineFiles = files.length;
  }
}

export interface RoleHostParts {
  work: PrimaryWork;
  events: HookEvents;
  records: NodeRecords;
  /** The key-value state, rebuilt when a demotion cut the log. */
  state: { rebuild(): Promise<void> };
  logger: Logger;
}

/** The roles' host: the primary's work follows the role, and every change is published and hooked. */
export function roleHost(parts: RoleHostParts): RoleHost {
  const { work, events, records, state, logger } = parts;
  return {
    prepareRole: (role) => work.prepare(role),
    roleChanged: (role, info) => {
      logger.debug(`role ${role}`, { epoch: info.epoch, reason: info.reason });
      events.role(role, info);
      if (role === 'primary') work.start();
      else void work.stop(`standby: ${info.reason}`);
      void records.publish(records.current());
    },
    beforeStandDown: (reason) => work.stop(`standing down: ${reason}`, { finalMark: true }),
    stateRewound: () => state.rebuild(),
    publishHeartbeat: (atMs) => records.heartbeat(atMs),
  };
}

export interface SupervisorHostParts {
  events: HookEvents;
  records: NodeRecords;
  /** The power source's last status, for the retained power record of each new state. */
  lastPowerStatus(): Parameters<NodeRecords['power']>[0] | undefined;
  tailEnergy(): TailEnergy;
}

/** The supervisor's host: the brownout's steps, and the records and hooks of each power change. */
export function supervisorHost(brownout: Brownout, parts: SupervisorHostParts): SupervisorHost {
  const { events, records } = parts;
  // BROWNOUT and FLUSHING are both `flushing` on the wire and follow each other at once: one record says it
  // (on a slow uplink a record is hold-up time taken from the tail).
  let lastName: NodeStateName | undefined;
  return {
    shrinkTail: (onBattery) => brownout.shrinkTail(onBattery),
    flushTail: (budgetMs, signal) => brownout.flushTail(budgetMs, signal),
    publishHandoff: (outcome, reason) => brownout.publishHandoff(outcome, reason),
    waitForSuccessor: (timeoutMs) => brownout.waitForSuccessor(timeoutMs),
    resume: () => brownout.resume(),
    powerOff: () => brownout.powerOff(),
    publishPower: (status, state) => records.power(status, state),
    stateChanged: (state, reason) => {
      events.power(state, reason);
      if (STATE_NAMES[state] !== lastName) void records.publish(STATE_NAMES[state]);
      lastName = STATE_NAMES[state];
      const last = parts.lastPowerStatus();
      if (last) records.power(last, state, true);
    },
    tailEnergy: () => parts.tailEnergy(),
  };
}
