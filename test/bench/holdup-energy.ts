/**
 * The hold-up benchmark's energy scenario: gw-a behind a 1 Mbit/s uplink loses mains with a long unreplicated
 * tail while its writers keep writing a little faster than the link drains. The entries are incompressible
 * (DATA): with telemetry the batches compress about four times, the link drains four times what the rates
 * below assume, and both starts saved the whole tail (stop 24's run), which showed nothing. The simulated battery holds
 * ENERGY_RUNTIME_S at its load; the power goes when it is flat. Run once with the thresholds only (brownout
 * at runtime ≤ RUNTIME_S_MIN) and once energy-aware (power.energyAware): the fraction of the acknowledged
 * tail on gw-b at the cut, for each.
 */
import type { Mosquitto } from '../support/mosquitto.ts';
import { mulberry32 } from '../log/support/random.ts';
import { startShapedLink } from './shaped-link.ts';
import { entryValue, round, shapeFor, startShapedPair, warmUp, writeTail } from './holdup-support.ts';

const RATE_KBPS = 1000;
/** Battery runtime when mains goes: the pack's capacity and the gateway's load give it to the simulator. */
const ENERGY_RUNTIME_S = 24;
const CAPACITY_MAH = 2000;
const LOAD_MA = 36_000;
/** The threshold a threshold-only gateway flushes at. */
const RUNTIME_S_MIN = 4;
/** About 7 s of flush at the link's rate when mains goes. */
const TAIL_ENTRIES = 1000;
/** Writers on battery: about 1.2 × what the link drains, so the tail keeps growing. */
const WRITES_PER_S = 150;
const WRITES_IN_FLIGHT_MAX = 16;
const DATA = 'random';

async function run(broker: Mosquitto, dir: string, energyAware: boolean): Promise<number> {
  const link = await startShapedLink(broker.port, shapeFor(RATE_KBPS));
  const socPercent = ((ENERGY_RUNTIME_S / 3600) * LOAD_MA * 100) / CAPACITY_MAH;
  const simArgs = ['--capacity-mah', String(CAPACITY_MAH), '--load-ma', String(LOAD_MA), '--charge-ma', '0', '--soc', socPercent.toFixed(4)];
  const power = { energyAware, energyMarginMs: 2000, runtimeSMin: RUNTIME_S_MIN, onBatteryDebounceMs: 1000, flushBudgetMs: 60_000, handoffAckTimeoutMs: 0, cutDelayMs: 0 };
  const pair = await startShapedPair(dir, energyAware ? 'energyaware' : 'thresholdonly', broker, link, simArgs, power).catch(async (error: unknown) => {
    await link.cut();
    throw error;
  });
  const { a, b, sim } = pair;
  const random = mulberry32(energyAware ? 7 : 8);
  try {
    await warmUp(a, DATA, random);
    const replicatedAtPause = (await a.client.status()).watermarks.replicated as number;
    await a.client.setReplicationPaused(true);
    const acked = [...(await writeTail(a, Array.from({ length: TAIL_ENTRIES }, (_, index) => entryValue(DATA, random, index)), 'tail')).keys()];
    sim.send('ac off');
    const status = await sim.waitForLine((line) => line.event === 'status' && line.acPresent === false, 'status on battery');
    const cutAtMs = Date.now() + (status.runtimeS as number) * 1000;
    // Writers on battery, paced from the clock so that timer jitter does not slow them.
    let inFlight = 0;
    let index = 0;
    let refused = false;
    const startedMs = Date.now();
    while (Date.now() < cutAtMs && !refused) {
      while (!refused && inFlight < WRITES_IN_FLIGHT_MAX && index < ((Date.now() - startedMs) * WRITES_PER_S) / 1000) {
        inFlight++;
        const value = entryValue(DATA, random, TAIL_ENTRIES + index);
        void a.client.put(`battery/${index++}`, value).then(
          ({ seq }) => void acked.push(seq),
          () => void (refused = true),
        ).finally(() => inFlight--);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, cutAtMs - Date.now())));
    await link.cut();
    await a.process.kill('SIGKILL');
    const onB = (await b.client.status()).watermarks.committed as number;
    const tail = acked.filter((seq) => seq > replicatedAtPause);
    const trigger = a.events().find((line) => line.event === 'brownout-trigger');
    console.log(`energy scenario (${energyAware ? 'energy-aware' : 'threshold-only'}): brownout by ${String(trigger?.trigger ?? 'nothing')}: ${String(trigger?.reason ?? '')}; ${tail.filter((seq) => seq <= onB).length} of ${tail.length} acknowledged tail entries on gw-b at the cut`);
    return round(tail.filter((seq) => seq <= onB).length / tail.length);
  } finally {
    await pair.close();
    await link.cut().catch(() => undefined);
  }
}

export async function energyScenario(broker: Mosquitto, dir: string): Promise<{ thresholdOnlySaved: number; energyAwareSaved: number }> {
  const thresholdOnlySaved = await run(broker, dir, false);
  const energyAwareSaved = await run(broker, dir, true);
  return { thresholdOnlySaved, energyAwareSaved };
}
