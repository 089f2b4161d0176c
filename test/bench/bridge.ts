/**
 * `npm run bench:bridge`: how fast the BMS link decodes, and how fast a power event reaches the agent.
 *
 *   - Decode throughput of each codec (MB/s): a long stream of typical frames fed in 4 KiB chunks through the
 *     same accumulator and decoders the live driver uses (bridge telemetry, JBD basic info, Daly SOC, Megatec Q1,
 *     NUT LIST VAR lines). Baseline, side by side: one pass over the same bytes that only sums them, the
 *     cheapest thing any decoder could do.
 *   - Event latency on a pty (p50/p99 ms): bms-sim runs as its own process on one end of a socat pty pair and
 *     is told "ac off" / "ac on" over and over; it stamps each power event with the high-resolution wall time
 *     at which it wrote the frame. On the other end the agent's bridge PowerSource feeds the agent's
 *     PowerSupervisor (agent/power); the time of the supervisor's state change (ONLINE ↔ ON_BATTERY) minus the
 *     stamp is the event-to-state latency. Measured in the same run: to the PowerSource listener's `event`
 *     callback (the bridge alone), and the floor: one byte written on the device end and read on the host end
 *     of a pty pair in one process.
 * Prints a table, then one JSON object as the last line. Not part of `npm test`; run it with `nice`.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { SerialPort } from 'serialport';
import {
  BridgeParser,
  Counters,
  createPowerSource,
  DalyAccumulator,
  DalyCommand,
  decodeDalySoc,
  decodeJbdBasic,
  decodeQ1,
  DelimitedAccumulator,
  encodeMessage,
  encodeQ1,
  JbdAccumulator,
  parseNutLine,
  type PowerEvent,
} from '../../firmware-bridge/index.ts';
import { jbdResponse } from '../../firmware-bridge/jbd/sim-device.ts';
import { dalyResponse } from '../../firmware-bridge/daly/sim-device.ts';
import { PowerSupervisor, type SupervisorHost } from '../../agent/power/index.ts';
import { silentLogger, systemClock } from '../../agent/util/index.ts';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
const SIM_ENTRY = join(ROOT, 'firmware-bridge', 'cli', 'run-bms-sim.ts');
/** Bytes decoded per codec and run: large enough that a run takes tens of milliseconds at 100+ MB/s. */
const STREAM_BYTES = Number(process.env.LASTGASP_BENCH_STREAM_BYTES ?? 16 * 1024 * 1024);
const CHUNK_BYTES = 4096;
/** Runs per codec; the best is reported (the others include JIT warm-up and GC). */
const RUNS = 5;
/** Power events timed: each ac off / ac on cycle gives two. */
const EVENT_CYCLES = Number(process.env.LASTGASP_BENCH_EVENT_CYCLES ?? 150);
const FLOOR_SAMPLES = 300;
const MB = 1e6;

const now = () => performance.timeOrigin + performance.now();

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}

function repeatToSize(frames: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(STREAM_BYTES);
  let offset = 0;
  for (let index = 0; offset < out.length; index++) {
    const frame = frames[index % frames.length]!;
    if (offset + frame.length > out.length) break;
    out.set(frame, offset);
    offset += frame.length;
  }
  return out.subarray(0, offset);
}

const ascii = (text: string) => Uint8Array.from(text, (char) => char.charCodeAt(0));

/** A codec under test: builds its parser (counting frames) and says how many frames the stream holds. */
interface Codec {
  readonly name: string;
  readonly stream: Uint8Array;
  run(stream: Uint8Array): number;
}

function codecs(): Codec[] {
  const telemetry = Array.from({ length: 16 }, (_, seq) =>
    encodeMessage({ type: 'telemetry', acPresent: seq % 2 === 0, socPermille: 900 - seq, runtimeS: 5400, packMv: 13_200 + seq, currentMa: -1250, cellMv: [3300, 3301, 3299, 3300], temperaturesDeciC: [251], lowBattery: false, alarms: [], uptimeMs: 1000 * seq }, seq),
  );
  const jbdBasic = (() => {
    const data = new Uint8Array(25);
    const view = new DataView(data.buffer);
    view.setUint16(0, 1320);
    view.setInt16(2, -125);
    view.setUint8(19, 87);
    view.setUint8(21, 4);
    view.setUint8(22, 1);
    view.setUint16(23, 2982);
    return jbdResponse(0x03, data);
  })();
  const dalySoc = dalyResponse(DalyCommand.SOC, Uint8Array.of(0x00, 0x84, 0x00, 0x00, 0x74, 0xec, 0x03, 0x67));
  const q1 = ascii(encodeQ1({ inputV: 230, inputFaultV: 230, outputV: 230, loadPercent: 16, frequencyHz: 50, batteryV: 13.2, temperatureC: 25, utilityFail: false, batteryLow: false, bypassActive: false, upsFailed: false, standby: true, testInProgress: false, shutdownActive: false, beeperOn: true }));
  const nut = ['BEGIN LIST VAR ups', 'VAR ups battery.charge "87"', 'VAR ups battery.runtime "5400"', 'VAR ups battery.voltage "13.2"', 'VAR ups ups.status "OL CHRG"', 'END LIST VAR ups'].map((line) => ascii(line + '\n'));
  const latin1 = new TextDecoder('latin1');
  return [
    {
      name: 'bridge',
      stream: repeatToSize(telemetry),
      run(stream) {
        let frames = 0;
        const parser = new BridgeParser({ frame: () => frames++ });
        feed(stream, (chunk) => parser.push(chunk));
        return frames;
      },
    },
    {
      name: 'jbd',
      stream: repeatToSize([jbdBasic]),
      run(stream) {
        let frames = 0;
        const accumulator = new JbdAccumulator(new Counters(), (frame) => {
          if (decodeJbdBasic(frame.data).ok) frames++;
        });
        feed(stream, (chunk) => accumulator.push(chunk));
        return frames;
      },
    },
    {
      name: 'daly',
      stream: repeatToSize([dalySoc]),
      run(stream) {
        let frames = 0;
        const accumulator = new DalyAccumulator(new Counters(), (frame) => {
          decodeDalySoc(frame.data);
          frames++;
        });
        feed(stream, (chunk) => accumulator.push(chunk));
        return frames;
      },
    },
    {
      name: 'q1',
      stream: repeatToSize([q1]),
      run(stream) {
        let frames = 0;
        const accumulator = new DelimitedAccumulator({ delimiter: 0x0d, frameLenMax: 64 }, new Counters(), (line) => {
          if (decodeQ1(latin1.decode(line)).ok) frames++;
        });
        feed(stream, (chunk) => accumulator.push(chunk));
        return frames;
      },
    },
    {
      name: 'nut',
      stream: repeatToSize(nut),
      run(stream) {
        let frames = 0;
        const accumulator = new DelimitedAccumulator({ delimiter: 0x0a, frameLenMax: 4096 }, new Counters(), (line) => {
          parseNutLine(latin1.decode(line));
          frames++;
        });
        feed(stream, (chunk) => accumulator.push(chunk));
        return frames;
      },
    },
  ];
}

function feed(stream: Uint8Array, push: (chunk: Uint8Array) => void): void {
  for (let offset = 0; offset < stream.length; offset += CHUNK_BYTES) push(stream.subarray(offset, offset + CHUNK_BYTES));
}

/** The baseline: touch every byte once, in the same chunks. */
function scan(stream: Uint8Array): number {
  let sum = 0;
  feed(stream, (chunk) => {
    for (let index = 0; index < chunk.length; index++) sum = (sum + chunk[index]!) | 0;
  });
  return sum;
}

function bestMBps(bytes: number, work: () => void): number {
  let best = 0;
  for (let run = 0; run < RUNS; run++) {
    const start = performance.now();
    work();
    const seconds = (performance.now() - start) / 1000;
    best = Math.max(best, bytes / MB / seconds);
  }
  return best;
}

async function ptyPair(dir: string): Promise<{ device: string; host: string; stop: () => Promise<void> }> {
  const device = join(dir, 'device');
  const host = join(dir, 'host');
  const socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${host}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  socat.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const deadline = performance.now() + 5000;
  while (!(stderr.includes('starting data transfer loop') && existsSync(device) && existsSync(host))) {
    if (performance.now() > deadline || socat.exitCode !== null) throw new Error(`socat: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return {
    device,
    host,
    stop: () =>
      new Promise((resolve) => {
        socat.once('exit', () => resolve());
        socat.kill('SIGTERM');
      }),
  };
}

function openPort(path: string): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const port = new SerialPort({ path, baudRate: 115200, autoOpen: false });
    port.open((error) => (error ? reject(error) : resolve(port)));
  });
}

/** One byte from the device end to the host end of a pty pair, in one process: the floor of any latency here. */
async function ptyFloor(dir: string): Promise<number[]> {
  const pair = await ptyPair(dir);
  const device = await openPort(pair.device);
  const host = await openPort(pair.host);
  const samples: number[] = [];
  try {
    for (let sample = 0; sample < FLOOR_SAMPLES; sample++) {
      const arrived = new Promise<number>((resolve) => host.once('data', () => resolve(now())));
      const sentAt = now();
      device.write(Uint8Array.of(0x55));
      samples.push((await arrived) - sentAt);
    }
  } finally {
    await new Promise((resolve) => device.close(resolve));
    await new Promise((resolve) => host.close(resolve));
    await pair.stop();
  }
  return samples;
}

interface Latencies {
  toCallback: number[];
  toState: number[];
}

/** The supervisor's host: nothing to flush in this measurement, only the state changes matter. */
function idleHost(): SupervisorHost {
  return {
    shrinkTail: () => undefined,
    flushTail: async () => ({ tailAtStart: 0, lastSeq: 0, committed: 0, complete: true, end: 'flushed', flushMs: 0 }),
    publishHandoff: async () => undefined,
    waitForSuccessor: async () => true,
    resume: () => undefined,
    powerOff: async () => undefined,
    publishPower: () => undefined,
    stateChanged: () => undefined,
  };
}

async function eventLatency(dir: string): Promise<Latencies> {
  const pair = await ptyPair(dir);
  const sim = spawn(process.execPath, ['--import', 'tsx', SIM_ENTRY, '--serial', pair.device, '--telemetry-ms', '250'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: sim.stdout });
  const sent: Array<{ kind: string; sentAtMs: number }> = [];
  const waiters: Array<() => void> = [];
  lines.on('line', (text) => {
    if (!text.startsWith('{')) return;
    const line = JSON.parse(text) as { event: string; kind?: string; sentAtMs?: number };
    if (line.event === 'listening') waiters.shift()?.();
    if (line.event === 'power-event') sent.push({ kind: line.kind!, sentAtMs: line.sentAtMs! });
  });
  await new Promise<void>((resolve) => waiters.push(resolve));

  const source = createPowerSource({ kind: 'bridge', transport: { type: 'serial', path: pair.host } });
  const callbackAt: Array<{ kind: string; atMs: number }> = [];
  const stateAt: Array<{ state: string; atMs: number }> = [];
  // The PowerSource listener is the supervisor's; wrapping start() lets the bench see the event callback too.
  const start = source.start.bind(source);
  source.start = (listener) =>
    start({
      status: (status) => listener.status(status),
      link: (state, reason) => listener.link(state, reason),
      event: (event: PowerEvent) => {
        callbackAt.push({ kind: event.kind, atMs: now() });
        listener.event(event);
      },
    });
  const supervisor = new PowerSupervisor({
    source,
    host: idleHost(),
    thresholds: { socPercentMin: 0, runtimeSMin: 0, onBatterySMax: 0, trustDeviceLowBattery: false, onBatteryDebounceMs: 0, linkDeadMs: 60_000 },
    flushBudgetMs: 1000,
    handoffAckTimeoutMs: 1000,
    cutDelayMs: 100,
    logger: silentLogger,
    clock: systemClock,
  });
  supervisor.on('state', (state) => stateAt.push({ state, atMs: now() }));
  await supervisor.start();
  const linkUp = await waitUntil(() => (supervisor.status().link === 'up' ? true : undefined), 10_000);
  if (!linkUp) throw new Error('the bridge did not come up');

  const result: Latencies = { toCallback: [], toState: [] };
  for (let cycle = 0; cycle < EVENT_CYCLES; cycle++) {
    for (const [command, kind, state] of [['ac off', 'ac-lost', 'ON_BATTERY'], ['ac on', 'ac-restored', 'ONLINE']] as const) {
      const sentBefore = sent.length;
      const statesBefore = stateAt.length;
      const callbacksBefore = callbackAt.length;
      sim.stdin.write(command + '\n');
      const done = await waitUntil(() => (sent.length > sentBefore && stateAt.length > statesBefore && callbackAt.length > callbacksBefore ? true : undefined), 5000);
      if (!done) throw new Error(`no ${kind} → ${state} within 5 s`);
      const stamp = sent[sentBefore]!;
      if (stamp.kind !== kind || stateAt[statesBefore]!.state !== state) throw new Error(`unexpected ${stamp.kind} / ${stateAt[statesBefore]!.state}`);
      result.toCallback.push(callbackAt[callbacksBefore]!.atMs - stamp.sentAtMs);
      result.toState.push(stateAt[statesBefore]!.atMs - stamp.sentAtMs);
    }
  }
  await supervisor.stop();
  sim.stdin.write('quit\n');
  await new Promise((resolve) => sim.once('exit', resolve));
  await pair.stop();
  return result;
}

async function waitUntil<T>(probe: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined || performance.now() > deadline) return value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lastgasp-bench-bridge-'));
  try {
    console.log(`decode throughput, ${(STREAM_BYTES / MB).toFixed(0)} MB per codec in ${CHUNK_BYTES}-byte chunks, best of ${RUNS}`);
    const all = codecs();
    const baselines: Record<string, number> = {};
    const codecMBps: Record<string, number> = {};
    for (const codec of all) {
      const frames = codec.run(codec.stream);
      baselines[codec.name] = bestMBps(codec.stream.length, () => scan(codec.stream));
      codecMBps[codec.name] = bestMBps(codec.stream.length, () => codec.run(codec.stream));
      const frameBytes = codec.stream.length / frames;
      console.log(
        `  ${codec.name.padEnd(7)} ${codecMBps[codec.name]!.toFixed(1).padStart(7)} MB/s  ${((codecMBps[codec.name]! * MB) / frameBytes / 1e6).toFixed(2)} M frames/s (${frameBytes.toFixed(0)} B each)   baseline byte scan ${baselines[codec.name]!.toFixed(0)} MB/s, ratio ${(codecMBps[codec.name]! / baselines[codec.name]!).toFixed(3)}`,
      );
    }

    const floor = await ptyFloor(dir);
    const latency = await eventLatency(dir);
    const row = (name: string, values: number[]) => console.log(`  ${name.padEnd(44)} p50 ${percentile(values, 0.5).toFixed(3)} ms   p99 ${percentile(values, 0.99).toFixed(3)} ms   (${values.length} samples)`);
    console.log('latency on a socat pty');
    row('floor: one byte device end → host end', floor);
    row('sim writes event → PowerSource event callback', latency.toCallback);
    row('sim writes event → PowerSupervisor state change', latency.toState);

    const round = (value: number) => Math.round(value * 1000) / 1000;
    console.log(
      JSON.stringify({
        codecMBps: Object.fromEntries(Object.entries(codecMBps).map(([name, value]) => [name, round(value)])),
        baselineScanMBps: Object.fromEntries(Object.entries(baselines).map(([name, value]) => [name, round(value)])),
        eventToStateP50Ms: round(percentile(latency.toState, 0.5)),
        eventToStateP99Ms: round(percentile(latency.toState, 0.99)),
        eventToCallbackP50Ms: round(percentile(latency.toCallback, 0.5)),
        eventToCallbackP99Ms: round(percentile(latency.toCallback, 0.99)),
        ptyFloorP50Ms: round(percentile(floor, 0.5)),
        ptyFloorP99Ms: round(percentile(floor, 0.99)),
        eventSamples: latency.toState.length,
        stateMeasuredAt: 'agent/power PowerSupervisor state event',
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
