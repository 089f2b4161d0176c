/**
 * `lastgasp bms-sim`: a battery controller on a pty or a TCP port, for the demo, the end-to-end tests,
 * and anyone writing a supervisor without hardware on the desk.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { explainParseError } from '../core/index.ts';
import { EXIT_OK, EXIT_USAGE, type Io } from './io.ts';
import {
  Battery,
  CONTROL_HELP,
  garbageBytes,
  parseControl,
  PtySimLink,
  SimDevice,
  TcpSimLink,
  TtySimLink,
  type ControlCommand,
  type SimLine,
  type SimLink,
  type SimLinkHandlers,
  type SimProtocol,
} from '../sim/index.ts';
import { BridgeSimProtocol } from '../bridge/sim-device.ts';
import { DalySimProtocol } from '../daly/sim-device.ts';
import { JbdSimProtocol } from '../jbd/sim-device.ts';
import { Q1SimProtocol } from '../megatec/sim-device.ts';
import { defaultScenario, loadScenario, parseInlineStep, ScenarioError, type Scenario } from './scenario.ts';

export const SIM_PROTOCOLS = ['bridge', 'jbd', 'daly', 'q1'] as const;
export type SimProtocolName = (typeof SIM_PROTOCOLS)[number];

/** Usual line speed per protocol: the bridge's default, JBD and Daly UARTs at 9600, Megatec at 2400. */
const SIM_BAUD: Record<SimProtocolName, number> = { bridge: 115200, jbd: 9600, daly: 9600, q1: 2400 };

export const BMS_SIM_HELP = `Usage: lastgasp bms-sim [--protocol bridge|jbd|daly|q1] (--tcp HOST:PORT | --serial PATH | --pty LINK) [options]

Plays a battery controller so that the agent, the demo and the tests have a BMS to talk to.

Protocols:
  bridge   (default) the lastgasp bridge protocol (firmware-bridge/PROTOCOL.md): telemetry every
           --telemetry-ms, power events (ac-lost, ac-restored, low-battery, brownout) pushed at once and repeated
           until acknowledged, heartbeats both ways with a watchdog, and the host's hold, cut and cancel.
  jbd      a JBD/Xiaoxiang smart BMS answering registers 0x03, 0x04, 0x05 (9600 baud).
  daly     a Daly BMS answering 0x90-0x98 with 13-byte frames (9600 baud).
  q1       a Megatec UPS answering Q1, F and I, obeying S<n> (shutdown) and C (cancel) (2400 baud); NUT's
           nutdrv_qx reads it with protocol=megatec.
  The polled protocols only answer; mains, low battery and a pending shutdown show in their answers (a BMS
  has no mains flag: the host infers it from the discharge current). "brownout" exists only in bridge mode.

Where it listens (exactly one):
  --tcp HOST:PORT        listen on TCP like ser2net in raw mode; port 0 picks a free one
  --serial PATH          open an existing tty, e.g. one end of "socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B"
  --pty LINK             make a pty pair with socat and put the end the agent opens at LINK

Battery model (defaults in brackets):
  --capacity-mah N [2000]   --soc PERCENT [100]    --load-ma N [800]       --charge-ma N [1000]
  --cells N [4]             --chemistry li-ion|lifepo4 [li-ion]            --cell-resistance-mohm N [30]
  --speed X [1]             model time runs X times faster than the clock (a demo drains a pack in seconds)
  --low-battery-percent N [20]   --brownout-percent N [5] (0 = brownout only by command)
  --restart-ms N [2000]     after a cut with mains present, power returns after this long

Bridge timings:
  --telemetry-ms N [250]    --heartbeat-ms N [1000]    --hold-max-ms N [600000]
  --baud N                  line speed for --serial/--pty [bridge 115200, jbd/daly 9600, q1 2400]

Scenario:
  --scenario FILE           JSON or YAML with battery, thresholds, bridge and steps:
                              steps: [ { atMs: 2000, command: "ac off" }, { atMs: 9000, command: "ac on" } ]
  --step MS:COMMAND         one more step, repeatable: --step "2000:ac off" --step "4000:brownout"
  --seed N [1]              seed of the garbage generator, so that a run can be replayed

Control on stdin, one command per line (the same commands as scenario steps):
${CONTROL_HELP.map((line) => `  ${line}`).join('\n')}

Output on stdout, one JSON object per line:
  {"event":"listening","tcp":"127.0.0.1:PORT"} or {"event":"listening","path":"LINK"}   once, when ready
  {"event":"control","command":"ac off","ok":true}             each stdin command, acknowledged
  {"event":"status",...} {"event":"power-event","kind":"ac-lost"} {"event":"power-event-acked",...}
  {"event":"hello",...} {"event":"link","state":"up"}           the host connected and said HELLO
  {"event":"command","kind":"cut","delayMs":500}                a host command received
  {"event":"power-cut","reason":"host"|"flat"}                  the output is off: the gateway just died
  {"event":"watchdog","state":"expired"}                        the host's heartbeats stopped

Examples:
  lastgasp bms-sim --tcp 127.0.0.1:0 --step "3000:ac off" --step "6000:brownout"
  lastgasp bms-sim --pty ./bms-pty --soc 40 --speed 120 --scenario outage.yaml
  lastgasp bms-sim --protocol q1 --pty ./ups-pty     (then point NUT's nutdrv_qx at ./ups-pty with protocol=megatec)
`;

interface SimArgs {
  protocol: SimProtocolName;
  where: { tcp: { host: string; port: number } } | { serial: string } | { pty: string };
  baudRate: number;
  scenario: Scenario;
  seed: number;
}

class UsageError extends Error {}

export async function bmsSimMain(argv: string[], io: Io): Promise<number> {
  let args: SimArgs | 'help';
  try {
    args = await parseSimArgs(argv);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ScenarioError) {
      io.stderr(`bms-sim: ${error.message}`);
      io.stderr('Run "lastgasp bms-sim --help" for the options.');
      return EXIT_USAGE;
    }
    throw error;
  }
  if (args === 'help') {
    io.stdout(BMS_SIM_HELP);
    return EXIT_OK;
  }
  return runSimulator(args, io);
}

async function parseSimArgs(argv: string[]): Promise<SimArgs | 'help'> {
  const numberOptions = [
    'capacity-mah', 'soc', 'load-ma', 'charge-ma', 'cells', 'cell-resistance-mohm', 'speed', 'low-battery-percent',
    'brownout-percent', 'restart-ms', 'telemetry-ms', 'heartbeat-ms', 'hold-max-ms', 'baud', 'seed',
  ] as const;
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        protocol: { type: 'string' },
        tcp: { type: 'string' },
        serial: { type: 'string' },
        pty: { type: 'string' },
        scenario: { type: 'string' },
        step: { type: 'string', multiple: true },
        chemistry: { type: 'string' },
        ...Object.fromEntries(numberOptions.map((name) => [name, { type: 'string' as const }])),
      },
    });
  } catch (error) {
    throw new UsageError(explainParseError(error, ['help', 'protocol', 'tcp', 'serial', 'pty', 'scenario', 'step', 'chemistry', ...numberOptions]));
  }
  const values = parsed.values as OptionValues;
  if (values.help) return 'help';
  const protocol = (values.protocol as string | undefined) ?? 'bridge';
  if (!(SIM_PROTOCOLS as readonly string[]).includes(protocol)) throw new UsageError(`--protocol ${protocol}: expected one of ${SIM_PROTOCOLS.join(', ')}`);
  const places = (['tcp', 'serial', 'pty'] as const).filter((name) => values[name] !== undefined);
  if (places.length !== 1) throw new UsageError('give exactly one of --tcp HOST:PORT, --serial PATH, --pty LINK');
  const where = parsePlace(places[0]!, values[places[0]!] as string);
  const scenario = defaultScenario();
  if (typeof values.scenario === 'string') await loadScenario(values.scenario, scenario);
  const number = numberOption(values);
  applyModelOptions(values, number, scenario);
  for (const text of (values.step as string[] | undefined) ?? []) scenario.steps.push(parseInlineStep(text));
  scenario.steps.sort((a, b) => a.atMs - b.atMs);
  const typed = protocol as SimProtocolName;
  return { protocol: typed, where, baudRate: number('baud', 50, 4_000_000) ?? SIM_BAUD[typed], scenario, seed: number('seed', 0, 0xffffffff) ?? 1 };
}

type OptionValues = Record<string, string | string[] | boolean | undefined>;
type NumberOption = (name: string, min: number, max: number) => number | undefined;

/** Reads `--name N` as a number within min..max, or undefined when absent; anything else is a usage error. */
function numberOption(values: OptionValues): NumberOption {
  return (name, min, max) => {
    const raw = values[name];
    if (raw === undefined) return undefined;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min || value > max) throw new UsageError(`--${name} ${String(raw)}: expected a number in ${min}..${max}`);
    return value;
  };
}

/** The battery, threshold and bridge-timing options, each overriding the scenario file's value. */
function applyModelOptions(values: OptionValues, number: NumberOption, scenario: Scenario): void {
  const set = <T extends object>(target: T, key: keyof T, value: number | undefined) => {
    if (value !== undefined) (target as Record<keyof T, unknown>)[key] = value;
  };
  const battery = { ...scenario.battery };
  set(battery, 'capacityMah', number('capacity-mah', 1, 10_000_000));
  set(battery, 'socPercent', number('soc', 0, 100));
  set(battery, 'loadMa', number('load-ma', 0, 1_000_000));
  set(battery, 'chargeMa', number('charge-ma', 0, 1_000_000));
  set(battery, 'cells', number('cells', 1, 32));
  set(battery, 'cellResistanceMohm', number('cell-resistance-mohm', 0, 10_000));
  set(battery, 'speed', number('speed', 0.001, 1_000_000));
  if (values.chemistry !== undefined) {
    if (values.chemistry !== 'li-ion' && values.chemistry !== 'lifepo4') throw new UsageError(`--chemistry ${String(values.chemistry)}: expected li-ion or lifepo4`);
    battery.chemistry = values.chemistry;
  }
  scenario.battery = battery;
  const thresholds = { ...scenario.thresholds };
  set(thresholds, 'lowBatteryPercent', number('low-battery-percent', 0, 100));
  set(thresholds, 'brownoutPercent', number('brownout-percent', 0, 100));
  set(thresholds, 'restartMs', number('restart-ms', 0, 3_600_000));
  scenario.thresholds = thresholds;
  const bridge = { ...scenario.bridge };
  set(bridge, 'telemetryMs', number('telemetry-ms', 10, 3_600_000));
  set(bridge, 'heartbeatMs', number('heartbeat-ms', 10, 3_600_000));
  set(bridge, 'holdMsMax', number('hold-max-ms', 0, 0xffffffff));
  scenario.bridge = bridge;
}

function parsePlace(kind: 'tcp' | 'serial' | 'pty', value: string): SimArgs['where'] {
  if (kind === 'serial') return { serial: value };
  if (kind === 'pty') return { pty: value };
  const match = /^(.*):(\d+)$/.exec(value);
  const port = match ? Number(match[2]) : NaN;
  if (!match || !match[1] || port > 65535) throw new UsageError(`--tcp ${value}: expected HOST:PORT, e.g. 127.0.0.1:0`);
  return { tcp: { host: match[1].replace(/^\[(.*)\]$/, '$1'), port } };
}

async function runSimulator(args: SimArgs, io: Io): Promise<number> {
  const emit = (line: SimLine) => io.stdout(JSON.stringify(line));
  const device = new SimDevice(new Battery(args.scenario.battery), args.scenario.thresholds, emit);
  let protocol: SimProtocol | undefined;
  const handlers: SimLinkHandlers = {
    data: (chunk) => protocol?.receive(chunk),
    up: () => {
      emit({ event: 'link', state: 'up' });
      protocol?.linkUp();
    },
    down: (reason) => {
      emit({ event: 'link', state: 'down', reason });
      protocol?.linkDown();
    },
  };
  let link: SimLink;
  try {
    link = await openLink(args, handlers);
  } catch (error) {
    io.stderr(`bms-sim: ${(error as Error).message}`);
    return EXIT_USAGE;
  }
  protocol = createSimProtocol(args, device, link, emit);
  protocol.start();
  emit({ event: 'listening', ...link.where, protocol: args.protocol });

  let finish: (code: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => (finish = resolve));
  const garbageState = { seed: args.seed };
  const run = (command: ControlCommand): void => applyControl(command, { device, link, protocol, emit, garbageState, quit: () => finish(EXIT_OK) });

  const startedMs = performance.now();
  const stepTimers = args.scenario.steps.map((step) =>
    setTimeout(() => {
      emit({ event: 'step', atMs: step.atMs, command: step.text });
      run(step.command);
    }, Math.max(0, step.atMs - (performance.now() - startedMs))),
  );

  const lines = io.stdin ? createInterface({ input: io.stdin, crlfDelay: Infinity }) : undefined;
  lines?.on('line', (line) => {
    if (line.trim() === '') return;
    const parsed = parseControl(line);
    if (!parsed.ok) return emit({ event: 'control', command: line.trim(), ok: false, error: parsed.error });
    emit({ event: 'control', command: line.trim(), ok: true });
    run(parsed.command);
  });
  const onSignal = () => finish(EXIT_OK);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  const code = await finished;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  lines?.close();
  for (const timer of stepTimers) clearTimeout(timer);
  protocol.stop();
  device.stop();
  await link.close();
  emit({ event: 'stopped' });
  return code;
}

interface ControlParts {
  readonly device: SimDevice;
  readonly link: SimLink;
  readonly protocol: SimProtocol;
  readonly emit: (line: SimLine) => void;
  readonly garbageState: { seed: number };
  readonly quit: () => void;
}

/** One control command, from stdin or a scenario step, applied to the running simulator. */
function applyControl(command: ControlCommand, parts: ControlParts): void {
  switch (command.kind) {
    case 'ac':
      return parts.device.setAc(command.present);
    case 'brownout':
      return parts.device.triggerBrownout();
    case 'soc':
      return parts.device.setSoc(command.percent);
    case 'load':
      return parts.device.setLoad(command.loadMa);
    case 'garbage':
      parts.link.write(garbageBytes(command.bytes, parts.garbageState));
      return parts.emit({ event: 'garbage', bytes: command.bytes });
    case 'corrupt':
      parts.link.corruptFrames += command.frames;
      return;
    case 'drop-link':
      parts.link.drop(command.ms);
      return parts.emit({ event: 'link-dropped', ms: command.ms });
    case 'slow':
      parts.link.slowMs = command.ms;
      return;
    case 'status':
    {
      const status = parts.device.status();
      return parts.emit({ event: 'status', ...status, cutPendingMs: status.cutPendingMs ?? null, counters: parts.protocol.counters() });
    }
    case 'quit':
      return parts.quit();
  }
}

function createSimProtocol(args: SimArgs, device: SimDevice, link: SimLink, emit: (line: SimLine) => void): SimProtocol {
  switch (args.protocol) {
    case 'bridge':
      return new BridgeSimProtocol(device, link, emit, args.scenario.bridge);
    case 'jbd':
      return new JbdSimProtocol(device, link, emit);
    case 'daly':
      return new DalySimProtocol(device, link, emit);
    case 'q1':
      return new Q1SimProtocol(device, link, emit);
  }
}

async function openLink(args: SimArgs, handlers: SimLinkHandlers): Promise<SimLink> {
  const where = args.where;
  if ('tcp' in where) return TcpSimLink.listen(where.tcp.host, where.tcp.port, handlers);
  if ('pty' in where) return PtySimLink.create(where.pty, handlers, args.baudRate);
  const tty = new TtySimLink(where.serial, handlers, args.baudRate);
  await tty.open();
  return tty;
}
