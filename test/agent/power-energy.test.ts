// The flush planned from energy (issue 12): on battery, the supervisor starts the brownout when the time the
// tail needs to leave comes within a margin of the time the battery has left, before any threshold when the
// tail would not fit, and not at all when it fits. The battery is the simulator's own model (coulomb
// counting, runtime at the present load) stepped by a clock the test advances; the drain rate is measured by
// the publisher's DrainMeter from acknowledgement times. The log's throttle sized in seconds runs on a real
// flash log in a temporary directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PowerSupervisor, flushNeedMs, step, initialState, throttleBytes, timeLeft, type FlushOutcome, type SupervisorHost, type TailEnergy, type Thresholds } from '../../agent/power/index.ts';
import { DrainMeter, DRAIN_SAMPLE_MS_MAX } from '../../agent/replication/index.ts';
import { createFlashLog } from '../../agent/log/index.ts';
import { isLastgaspError, type Logger, type LogFields, type LogMessage } from '../../agent/util/index.ts';
import { NoPowerSource, type PowerSourceListener, type PowerStatus } from '../../firmware-bridge/index.ts';
import { Battery, BATTERY_DEFAULTS } from '../../firmware-bridge/sim/index.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { tempDir } from '../support/ports.ts';

const thresholds: Thresholds = { socPercentMin: 0, runtimeSMin: 10, onBatterySMax: 0, trustDeviceLowBattery: false, onBatteryDebounceMs: 2000, linkDeadMs: 15_000, energyMarginMs: 2000 };
const HANDOFF_ACK_TIMEOUT_MS = 1000;
const CUT_DELAY_MS = 100;

/** A BMS that reports the simulator battery's charge, current and runtime once a second, on battery from the start. */
class SimulatedBms extends NoPowerSource {
  override readonly name = 'sim-bms';
  override readonly capabilities = { cutPower: false, holdPower: false, pushEvents: true };
  private listener: PowerSourceListener | undefined;
  constructor(
    readonly battery: Battery,
    private readonly clock: FakeClock,
  ) {
    super();
  }
  override async start(listener: PowerSourceListener): Promise<void> {
    this.listener = listener;
    listener.link('up');
    this.report();
  }
  private report(): void {
    const status: PowerStatus = { source: this.name, acPresent: false, socPercent: this.battery.socPercent, runtimeS: this.battery.runtimeS(), currentMa: this.battery.currentMa(false, true), alarms: [], atMs: this.clock.nowMs() };
    this.listener!.status(status);
    this.clock.setTimeout(() => {
      this.battery.step(1000, false, true);
      this.report();
    }, 1000);
  }
}

function recordingLogger(lines: Array<{ message: string; fields: LogFields | undefined }>): Logger {
  const at = (message: LogMessage, fields?: LogFields) => void lines.push({ message: typeof message === 'string' ? message : message(), fields });
  const logger: Logger = { debug: at, info: at, warn: at, error: at, child: () => logger };
  return logger;
}

/**
 * A gateway on battery with 60 s of runtime at its load, a tail of `tailBytes` that the link drains at
 * `bytesPerS` while writers keep adding `growBytesPerS`. Returns when the flush started (ms after mains
 * was lost) and the brownout-trigger log line.
 */
async function runOnBattery(tailBytes: number, bytesPerS: number, growBytesPerS: number) {
  const clock = new FakeClock();
  const startedAt = clock.monotonicMs();
  const battery = new Battery({ ...BATTERY_DEFAULTS, capacityMah: 1000, loadMa: 1000, socPercent: (60 / 3600) * 100 });
  const source = new SimulatedBms(battery, clock);
  const lines: Array<{ message: string; fields: LogFields | undefined }> = [];
  let flushStartedAtMs: number | undefined;
  let tail = tailBytes;
  let lastMs = clock.monotonicMs();
  const host: SupervisorHost = {
    shrinkTail: () => undefined,
    flushTail: async () => {
      flushStartedAtMs = clock.monotonicMs() - startedAt;
      const outcome: FlushOutcome = { tailAtStart: 1, lastSeq: 1, committed: 1, complete: true, end: 'flushed', flushMs: 1 };
      return outcome;
    },
    publishHandoff: async () => undefined,
    waitForSuccessor: async () => true,
    resume: () => undefined,
    powerOff: async () => undefined,
    publishPower: () => undefined,
    stateChanged: () => undefined,
    tailEnergy: (): TailEnergy => {
      const now = clock.monotonicMs();
      tail = Math.max(0, tail + ((growBytesPerS - bytesPerS) * (now - lastMs)) / 1000);
      lastMs = now;
      return { unreplicatedBytes: Math.round(tail), drainBytesPerS: bytesPerS };
    },
  };
  const supervisor = new PowerSupervisor({ source, host, thresholds, flushBudgetMs: 10_000, handoffAckTimeoutMs: HANDOFF_ACK_TIMEOUT_MS, cutDelayMs: CUT_DELAY_MS, logger: recordingLogger(lines), clock });
  await supervisor.start();
  for (let second = 0; second < 70 && flushStartedAtMs === undefined; second++) {
    clock.advance(1000);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await supervisor.stop();
  const trigger = lines.find((line) => line.fields?.event === 'brownout-trigger');
  return { flushStartedAtMs, trigger, runtimeAtFlushS: battery.runtimeS() };
}

test('a tail that would not fit the energy left starts the flush early, and the log line says it was the energy plan', async () => {
  // 2 MB at 50 kB/s with writers keeping pace: 40 s to leave, plus 1.6 s after the flush and the 2 s margin;
  // the battery has 60 s.
  const { flushStartedAtMs, trigger, runtimeAtFlushS } = await runOnBattery(2_000_000, 50_000, 50_000);
  assert.ok(flushStartedAtMs !== undefined, 'the flush started');
  assert.equal(trigger?.fields?.trigger, 'energy');
  assert.match(trigger!.message, /energy plan: energy: the tail needs 41\.6 s \(2000000 bytes at 50000 B\/s/);
  assert.match(trigger!.message, /left \(runtime\), within the 2\.0 s margin/);
  // It started with the whole tail still able to leave, long before the 10 s runtime threshold.
  assert.ok(runtimeAtFlushS >= 42 && runtimeAtFlushS <= 45, `started with ${runtimeAtFlushS} s left`);
});

test('a tail that keeps growing is re-weighed from the traffic: the flush starts once it would no longer fit', async () => {
  // 100 kB draining at 50 kB/s while writers add 80 kB/s: the tail grows 30 kB a second until it fills the energy.
  const { trigger, runtimeAtFlushS } = await runOnBattery(100_000, 50_000, 80_000);
  assert.equal(trigger?.fields?.trigger, 'energy');
  const tailAtFlushBytes = Number(/needs [\d.]+ s \((\d+) bytes/.exec(trigger!.message)![1]);
  assert.ok(flushNeedMs(tailAtFlushBytes, 50_000) + 1600 + 2000 >= runtimeAtFlushS * 1000, 'it waited as long as the tail fit');
  assert.ok(runtimeAtFlushS > 10, 'and started before the runtime threshold would have');
});

test('a tail that fits does not start the flush early: the runtime threshold does, and says so', async () => {
  // 100 kB at 50 kB/s: 2 s; it fits until the battery is nearly empty, so the 10 s runtime threshold comes first.
  const { flushStartedAtMs, trigger, runtimeAtFlushS } = await runOnBattery(100_000, 50_000, 0);
  assert.ok(flushStartedAtMs !== undefined && flushStartedAtMs >= 49_000, `flush at ${flushStartedAtMs} ms`);
  assert.equal(trigger?.fields?.trigger, 'threshold');
  assert.match(trigger!.message, /runtime 10 s ≤ 10 s/);
  assert.equal(runtimeAtFlushS, 10);
});

test('the energy rule waits out the debounce, is off without a margin, and reads charge and load without a runtime', () => {
  const tail = { bytes: 1_000_000, bytesPerS: 100_000, afterFlushMs: 1600 };
  const onBattery = { source: 't', acPresent: false, socPercent: 1, currentMa: -3600, alarms: [], atMs: 0 } as const;
  let state = step(initialState(0), { type: 'status', status: onBattery, atMs: 0 }, thresholds).state;
  // 1 % of 1000 mAh at 3.6 A: 10 s left; the tail needs 10 s + 1.6 s.
  const charged = { ...thresholds, batteryMah: 1000 };
  state = step(state, { type: 'tail', tail, atMs: 1000 }, charged).state;
  assert.equal(state.name, 'ON_BATTERY', 'not before the on-battery debounce');
  const fired = step(state, { type: 'tail', tail, atMs: 2500 }, charged);
  assert.equal(fired.state.name, 'BROWNOUT');
  assert.deepEqual(fired.actions.map((action) => (action.type === 'flush-and-handoff' ? action.trigger : action.type)), ['energy']);
  assert.match(fired.state.brownoutReason!, /10\.0 s left \(charge and load\)/);
  assert.equal(step(state, { type: 'tail', tail, atMs: 2500 }, { ...charged, energyMarginMs: undefined }).state.name, 'ON_BATTERY', 'thresholds only without a margin');
  assert.equal(step(state, { type: 'tail', tail, atMs: 2500 }, thresholds).state.name, 'ON_BATTERY', 'no time left known without a capacity');
  assert.deepEqual(timeLeft({ ...onBattery, currentMa: 500 }, 1000), undefined, 'a pack that is charging gives no estimate');
});

test('the drain meter counts busy time only and weighs by bytes', () => {
  const meter = new DrainMeter();
  assert.equal(meter.bytesPerS(), undefined);
  // A one-entry exchange on an idle link: 100 bytes in a 100 ms round trip.
  meter.sent(0);
  meter.acked(100, 100, true);
  // Ten idle seconds, then a long busy stretch at 1 MB/s, closed into samples as it goes.
  meter.sent(10_100);
  for (let atMs = 10_200; atMs <= 13_100; atMs += 100) meter.acked(100_000, atMs, atMs === 13_100);
  const rate = meter.bytesPerS()!;
  assert.ok(rate > 900_000 && rate <= 1_000_000, `rate ${rate}: the idle time did not count and the big stretch decided`);
  assert.ok(DRAIN_SAMPLE_MS_MAX <= 1000);
  assert.equal(meter.bytesPerS(true), undefined, 'no stretch filled the window: nothing to size batches by');
  meter.sent(20_000);
  meter.saturated();
  meter.acked(50_000, 20_100, true);
  assert.equal(meter.bytesPerS(true), 500_000, 'only the stretch with a full window sizes batches');
  const withSaturated = meter.bytesPerS()!;
  meter.reset();
  meter.acked(5, 30_000, true);
  assert.equal(meter.bytesPerS(), withSaturated, 'an ack outside a busy stretch changes nothing');
});

test('the throttle sized in seconds: appends fail at seconds × the measured rate, and the error names the setting', async () => {
  assert.equal(throttleBytes(2, 1000, 0), 2000);
  assert.equal(throttleBytes(2, 1000, 1500), 1500, 'a byte limit given too is kept when smaller');
  assert.equal(throttleBytes(2, undefined, 1500), 1500, 'until a rate is measured only the byte limit holds');
  const dir = await tempDir('throttle-seconds');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 64 * 1024 });
  await log.open();
  try {
    log.setUnreplicatedLimits(0, throttleBytes(2, 1000, 0), 'log.unreplicatedHardS: 2 s at the measured 1000 B/s');
    let refused: unknown;
    let appended = 0;
    for (let i = 0; i < 20 && !refused; i++) {
      try {
        await log.append(new Uint8Array(300).fill(1));
        appended++;
      } catch (error) {
        refused = error;
      }
    }
    assert.ok(isLastgaspError(refused, 'LOG_FULL'), 'refused at the limit');
    assert.match((refused as Error).message, /log\.unreplicatedHardS: 2 s at the measured 1000 B\/s/);
    assert.ok(log.status().unreplicatedBytes <= 2000 && appended >= 5, `${appended} appends, ${log.status().unreplicatedBytes} bytes unreplicated`);
    log.markReplicated(log.watermarks().committed);
    await log.append(new Uint8Array(300).fill(1));
  } finally {
    await log.close();
    await dir.remove();
  }
});
