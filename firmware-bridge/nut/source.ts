/**
 * A NUT server as a PowerSource: lastgasp speaks upsd's network protocol (TCP 3493) and polls `LIST VAR`,
 * so a gateway that already runs NUT for its UPS needs no second driver. Cutting power is NUT's way: the
 * `FSD` command (which needs a user with `upsmon primary` rights), after which NUT's own shutdown sequence
 * switches the UPS load off. FSD cannot be cleared without restarting upsd, so cancel is unsupported.
 */
import { readFile } from 'node:fs/promises';
import {
  DelimitedAccumulator,
  PolledPowerSource,
  type CommandResult,
  type Counters,
  type PolledOptions,
  type PollResult,
  type PowerSourceCapabilities,
  type StreamParser,
  type Transport,
} from '../core/index.ts';
import { NUT_LINE_LEN_MAX, NUT_NEWLINE, nutPowerView, parseNutLine, quoteNut, type NutLine } from './codec.ts';

export interface NutSourceOptions extends PolledOptions {
  readonly ups: string;
  readonly username?: string;
  readonly passwordFile?: string;
}

const utf8 = new TextDecoder();
const encoder = new TextEncoder();

export class NutPowerSource extends PolledPowerSource<NutLine> {
  readonly capabilities: PowerSourceCapabilities;
  private loggedIn = false;

  constructor(transport: Transport, private readonly nut: NutSourceOptions) {
    super(`nut:${nut.ups}@${transport.name}`, transport, nut);
    this.capabilities = { cutPower: nut.username !== undefined, holdPower: false, pushEvents: false };
  }

  protected createParser(counters: Counters, onFrame: (line: NutLine) => void): StreamParser {
    return new DelimitedAccumulator({ delimiter: NUT_NEWLINE, frameLenMax: NUT_LINE_LEN_MAX }, counters, (line) => {
      counters.add('rx.frames');
      counters.add('rx.frame-bytes', line.length + 1);
      onFrame(parseNutLine(utf8.decode(line)));
    });
  }

  protected override onOpen(): void {
    this.loggedIn = false;
  }

  /** Send one command line and collect lines until `until` says the answer is complete. */
  private async command(line: string, until: (reply: NutLine) => boolean): Promise<NutLine[] | undefined> {
    const lines: NutLine[] = [];
    const complete = await this.exchange(encoder.encode(line + '\n'), (reply) => {
      lines.push(reply);
      return reply.kind === 'err' || until(reply);
    });
    return complete ? lines : undefined;
  }

  protected async poll(): Promise<PollResult | undefined> {
    const ups = this.nut.ups;
    const lines = await this.command(`LIST VAR ${ups}`, (reply) => reply.kind === 'end');
    if (!lines || lines.some((line) => line.kind === 'err')) {
      const error = lines?.find((line) => line.kind === 'err');
      if (error?.kind === 'err') this.counters_.add(`nut.err.${error.code}`);
      return undefined;
    }
    const vars = new Map<string, string>();
    for (const line of lines) if (line.kind === 'var' && line.ups === ups) vars.set(line.name, line.value);
    const view = nutPowerView(vars);
    return {
      status: {
        source: this.name,
        acPresent: view.acPresent,
        socPercent: view.socPercent,
        runtimeS: view.runtimeS,
        packMv: view.packMv,
        currentMa: view.currentMa,
        temperaturesC: view.temperaturesC,
        lowBattery: view.lowBattery,
        alarms: view.alarms,
        atMs: this.clock.nowMs(),
      },
      powerOffPending: view.forcedShutdown,
    };
  }

  /** Log in (USERNAME, PASSWORD) once per connection. */
  private async login(): Promise<CommandResult> {
    if (this.loggedIn) return { ok: true };
    const username = this.nut.username;
    if (username === undefined) return { ok: false, reason: 'unsupported' };
    let password = '';
    if (this.nut.passwordFile) {
      try {
        password = (await readFile(this.nut.passwordFile, 'utf8')).trim();
      } catch (error) {
        return { ok: false, reason: `password file ${this.nut.passwordFile}: ${(error as Error).message}` };
      }
    }
    for (const line of [`USERNAME ${quoteNut(username)}`, `PASSWORD ${quoteNut(password)}`]) {
      const reply = await this.command(line, (answer) => answer.kind === 'ok');
      const last = reply?.at(-1);
      if (!last) return { ok: false, reason: 'timeout' };
      if (last.kind === 'err') return { ok: false, reason: `upsd refused ${line.split(' ')[0]}: ${last.code}` };
    }
    this.loggedIn = true;
    return { ok: true };
  }

  /** FSD: upsd marks the UPS forced-shutdown; NUT's shutdown sequence then switches the load off. */
  override async cutPower(_delayMs: number): Promise<CommandResult> {
    if (!this.linkUp) return { ok: false, reason: 'link-down' };
    const login = await this.login();
    if (!login.ok) return login;
    const reply = await this.command(`FSD ${this.nut.ups}`, (answer) => answer.kind === 'ok');
    const last = reply?.at(-1);
    if (!last) return { ok: false, reason: 'timeout' };
    return last.kind === 'ok' ? { ok: true } : { ok: false, reason: last.kind === 'err' ? last.code : 'unexpected answer' };
  }
}
