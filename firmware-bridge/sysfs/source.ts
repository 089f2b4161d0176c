/**
 * Linux `power_supply` as a PowerSource: polls the class directory. The link is `up` while the directory
 * holds at least one supply and `down` (with the reason) when it does not, e.g. a kernel without the driver.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Counters,
  EventEdges,
  systemBridgeClock,
  type BridgeClock,
  type BridgeTimer,
  type CommandResult,
  type LinkState,
  type PowerSource,
  type PowerSourceCapabilities,
  type PowerSourceListener,
} from '../core/index.ts';
import { SYSFS_FILES, SYSFS_POWER_SUPPLY_DIR, sysfsView, type SupplyFiles } from './codec.ts';

export interface SysfsSourceOptions {
  readonly path?: string;
  readonly pollMs: number;
  /** Times the poll period and stamps statuses; the system clock by default. */
  readonly clock?: BridgeClock;
}

export class SysfsPowerSource implements PowerSource {
  readonly name: string;
  readonly capabilities: PowerSourceCapabilities = { cutPower: false, holdPower: false, pushEvents: false };
  private readonly path: string;
  private listener: PowerSourceListener | undefined;
  private timer: BridgeTimer | undefined;
  private linkState: LinkState = 'down';
  private stopped = false;
  private readonly stats = new Counters(['polls', 'poll.failures']);
  private readonly edges = new EventEdges((event) => this.listener?.event(event));
  private readonly clock: BridgeClock;

  constructor(private readonly options: SysfsSourceOptions) {
    this.clock = options.clock ?? systemBridgeClock;
    this.path = options.path ?? SYSFS_POWER_SUPPLY_DIR;
    this.name = `sysfs:${this.path}`;
  }

  async start(listener: PowerSourceListener): Promise<void> {
    this.listener = listener;
    this.stopped = false;
    this.setLink('connecting');
    await this.poll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

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
    return this.stats.snapshot();
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    this.stats.add('polls');
    try {
      const supplies = await this.read();
      if (supplies.size === 0) throw new Error(`no power supply under ${this.path}`);
      const view = sysfsView(supplies);
      const status = { source: this.name, ...view, atMs: this.clock.nowMs() };
      this.setLink('up');
      this.listener?.status(status);
      this.edges.status(status);
    } catch (error) {
      this.stats.add('poll.failures');
      this.setLink('down', (error as Error).message);
    }
    if (!this.stopped) this.timer = this.clock.setTimeout(() => void this.poll(), this.options.pollMs);
  }

  private async read(): Promise<Map<string, SupplyFiles>> {
    const supplies = new Map<string, SupplyFiles>();
    for (const name of (await readdir(this.path)).sort()) {
      const files: SupplyFiles = {};
      for (const file of SYSFS_FILES) {
        try {
          files[file] = await readFile(join(this.path, name, file), 'utf8');
        } catch {
          // Not every supply has every attribute (a mains adapter has no capacity); absent means unknown.
        }
      }
      if (files.type !== undefined) supplies.set(name, files);
    }
    return supplies;
  }

  private setLink(state: LinkState, reason?: string): void {
    if (state === this.linkState) return;
    this.linkState = state;
    this.listener?.link(state, reason);
  }
}
