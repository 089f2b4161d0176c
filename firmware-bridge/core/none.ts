/** `power.source.kind: none`: a gateway without a battery controller. The supervisor learns nothing and can command nothing. */
import type { CommandResult, PowerSource, PowerSourceCapabilities, PowerSourceListener } from './types.ts';
import { systemBridgeClock, type BridgeClock } from './clock.ts';

/** Also the base of a source that reports but commands nothing (the tests' scripted and simulated ones). */
export class NoPowerSource implements PowerSource {
  readonly name: string = 'none';
  readonly capabilities: PowerSourceCapabilities = { cutPower: false, holdPower: false, pushEvents: false };

  constructor(private readonly sourceClock: BridgeClock = systemBridgeClock) {}

  async start(listener: PowerSourceListener): Promise<void> {
    listener.link('up');
    listener.status({ source: this.name, acPresent: undefined, alarms: [], atMs: this.sourceClock.nowMs() });
  }
  async stop(): Promise<void> {}
  holdPower(): Promise<CommandResult> {
    return Promise.resolve({ ok: false, reason: 'unsupported' });
  }
  cutPower(): Promise<CommandResult> {
    return Promise.resolve({ ok: false, reason: 'unsupported' });
  }
  cancelCut(): Promise<CommandResult> {
    return Promise.resolve({ ok: false, reason: 'unsupported' });
  }
  counters(): Readonly<Record<string, number>> {
    return {};
  }
}
