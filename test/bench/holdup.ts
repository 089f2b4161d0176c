/**
 * `npm run bench:holdup`: how much of an unreplicated tail reaches the sibling before the power goes, on a
 * slow uplink, against what the link could physically carry. Real parts: one mosquitto, the BMS simulator on
 * a socat pty, gw-a and gw-b as agent processes. gw-a reaches the broker through a shaped link (a token
 * bucket at 256 kbit/s, 1 Mbit/s or 10 Mbit/s, 50 ms each way, shaped-link.ts); gw-b sits next to the broker.
 *
 * Hold-up cases: a tail of N entries is written with replication paused (telemetry: JSON-like readings of
 * one gateway's meters; random: incompressible bytes), then mains is lost and the BMS reports a brownout; the
 * power goes `budgetS` later whatever gw-a is doing (the link is cut, the process SIGKILLed). At the cut:
 * the fraction of the tail on gw-b, against the physical limit for uncompressed bytes (rate × budget ÷ wire
 * bytes per entry, measured on the same run's publisher), and whether the handoff record was right (every
 * entry it says the sibling has is on gw-b, with the key gw-a acknowledged).
 *
 * The energy scenario (holdup-energy.ts): gw-a on battery with a long tail and writers still writing; the
 * battery runs flat at a known instant; a threshold-only start is compared with the energy-aware start.
 *
 * Environment: LASTGASP_HOLDUP_RATES_KBPS (default 256,1000,10000), LASTGASP_HOLDUP_BUDGETS_S (1,3,10),
 * LASTGASP_HOLDUP_DATA (telemetry,random), LASTGASP_HOLDUP_ENTRIES_MAX (24000); LASTGASP_HOLDUP_DEBUG=1 prints,
 * per case, gw-a's brownout log lines, its publisher before the brownout, gw-b at the cut and what crossed the
 * uplink when (uplink-trace.ts). The last line is one JSON object. Not part of `npm test`; run it with `nice`.
 */
import { startMosquitto, type Mosquitto } from '../support/mosquitto.ts';
import type { AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { mulberry32 } from '../log/support/random.ts';
import { measureShapedLink, startShapedLink } from './shaped-link.ts';
import { uplinkTrace } from './uplink-trace.ts';
import { energyScenario } from './holdup-energy.ts';
import { entryValue, keysOn, round, shapeFor, startShapedPair, warmUp, writeTail, type Data } from './holdup-support.ts';

const list = (name: string, fallback: string) => (process.env[name] ?? fallback).split(',').map((value) => value.trim());
const RATES_KBPS = list('LASTGASP_HOLDUP_RATES_KBPS', '256,1000,10000').map(Number);
const BUDGETS_S = list('LASTGASP_HOLDUP_BUDGETS_S', '1,3,10').map(Number);
const DATA = list('LASTGASP_HOLDUP_DATA', 'telemetry,random') as Array<'telemetry' | 'random'>;
/** Largest tail written per case: overfills every random case and telemetry up to 10 Mbit/s × 1 s, quick enough to write. */
const ENTRIES_MAX = Number(process.env.LASTGASP_HOLDUP_ENTRIES_MAX ?? 24000);
/**
 * Kept back from the hold-up budget: the agent's clock starts when the power source's brownout reaches it, a
 * few ms after the benchmark's. The agent itself keeps back what the handoff record needs (the bytes in flight
 * ahead of it and a round trip, measured on the link: agent/power/brownout.ts waitFlushed).
 */
const BROWNOUT_SKEW_MS = 50;
/**
 * The tail is this much larger than the link could carry uncompressed, so that the fraction saved measures
 * the flush: telemetry compresses to about a fifth (bench:compression), so its tail must hold more than twice.
 */
const OVERFILL: Record<Data, number> = { telemetry: 4, random: 1.25 };

interface CaseResult {
  rateKbps: number;
  budgetS: number;
  data: Data;
  entries: number;
  wireBytesPerEntry: number;
  savedFraction: number;
  physicalLimitFraction: number;
  ratioToLimit: number;
  handoffOut: boolean;
  handoffTruthful: boolean;
}

/**
 * Wire bytes per entry of this data on this run's publisher, uncompressed (the physical limit is the one of
 * uncompressed bytes): the warm-up's published bytes, with what compression saved added back, ÷ entries.
 */
async function wireBytesPerEntry(a: AgentProcess, data: Data, random: () => number): Promise<number> {
  await warmUp(a, data, random);
  const status = await a.client.status();
  const publisher = status.replication.publisher as { bytesPublished: number; entriesPublished: number; compression: { bytesIn: number; bytesOut: number } };
  return (publisher.bytesPublished + publisher.compression.bytesIn - publisher.compression.bytesOut) / publisher.entriesPublished;
}

async function holdupCase(broker: Mosquitto, dir: string, index: number, rateKbps: number, budgetS: number, data: Data): Promise<CaseResult> {
  const trace = process.env.LASTGASP_HOLDUP_DEBUG ? uplinkTrace() : undefined;
  const link = await startShapedLink(broker.port, { ...shapeFor(rateKbps), ...(trace ? { onUp: trace.onUp } : {}) });
  const random = mulberry32(index + 1);
  const flushBudgetMs = Math.max(100, budgetS * 1000 - BROWNOUT_SKEW_MS);
  const pair = await startShapedPair(dir, `holdup${index}`, broker, link, [], { onBatteryDebounceMs: 0, flushBudgetMs, handoffAckTimeoutMs: 0, cutDelayMs: 0 }).catch(async (error: unknown) => {
    await link.cut();
    throw error;
  });
  const { a, b, sim } = pair;
  try {
    const perEntry = await wireBytesPerEntry(a, data, random);
    const limitEntries = ((rateKbps * 1000) / 8) * budgetS / perEntry;
    const entries = Math.min(ENTRIES_MAX, Math.ceil(limitEntries * OVERFILL[data]));
    await a.client.setReplicationPaused(true);
    const values = Array.from({ length: entries }, (_, entry) => entryValue(data, random, entry));
    const acked = await writeTail(a, values, 'tail');
    const tailFirst = Math.min(...acked.keys());
    if (process.env.LASTGASP_HOLDUP_DEBUG) console.error(`holdup${index} publisher before the brownout`, JSON.stringify((await a.client.status()).replication.publisher));
    trace?.start();
    sim.send('ac off');
    sim.send('brownout');
    await new Promise((resolve) => setTimeout(resolve, budgetS * 1000));
    if (trace) console.error(`holdup${index} up the link since the brownout (ms when the last byte left: topic bytes)`, trace.line());
    await link.cut();
    await a.process.kill('SIGKILL');
    const statusB = await b.client.status();
    const onBAtCut = statusB.watermarks.committed as number;
    if (process.env.LASTGASP_HOLDUP_DEBUG) console.error(`holdup${index} gw-b at the cut`, JSON.stringify({ watermarks: statusB.watermarks, replication: statusB.replication }));
    const saved = Math.max(0, Math.min(onBAtCut, tailFirst + entries - 1) - tailFirst + 1);
    const handoff = a.events().find((line) => line.event === 'handoff');
    let truthful = true;
    if (handoff) {
      const onB = await keysOn(b, tailFirst);
      for (const [seq, key] of acked) if (seq <= (handoff.lastSeq as number) && onB.get(seq) !== key) truthful = false;
    }
    const savedFraction = saved / entries;
    const physicalLimitFraction = Math.min(1, limitEntries / entries);
    return {
      rateKbps,
      budgetS,
      data,
      entries,
      wireBytesPerEntry: Math.round(perEntry),
      savedFraction: round(savedFraction),
      physicalLimitFraction: round(physicalLimitFraction),
      ratioToLimit: round(savedFraction / physicalLimitFraction),
      handoffOut: handoff !== undefined,
      handoffTruthful: truthful,
    };
  } finally {
    await pair.close();
    await link.cut().catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const dir = await tempDir('bench-holdup');
  const broker = await startMosquitto(dir.path);
  const cases: CaseResult[] = [];
  try {
    console.log('hold-up bench: gw-a behind a shaped uplink (50 ms each way), the power cut budgetS after the brownout');
    // The physical limit assumes the link's nominal rate: the relay's own accuracy, saturated, beside it.
    const accuracy: string[] = [];
    for (const rateKbps of RATES_KBPS) accuracy.push(`${rateKbps} kbit/s ${(await measureShapedLink(shapeFor(rateKbps))).toFixed(3)}`);
    console.log(`the relay lets through, of its nominal rate: ${accuracy.join(', ')}`);
    console.log('rate kbit/s  budget s  data       entries  wire B/entry  saved   limit   saved/limit  handoff  truthful');
    let index = 0;
    for (const rateKbps of RATES_KBPS) {
      for (const budgetS of BUDGETS_S) {
        for (const data of DATA) {
          const result = await holdupCase(broker, dir.path, index++, rateKbps, budgetS, data);
          cases.push(result);
          console.log(
            `${String(rateKbps).padStart(11)}  ${String(budgetS).padStart(8)}  ${data.padEnd(9)}  ${String(result.entries).padStart(7)}  ${String(result.wireBytesPerEntry).padStart(12)}  ${result.savedFraction.toFixed(3)}   ${result.physicalLimitFraction.toFixed(3)}   ${result.ratioToLimit.toFixed(3).padStart(11)}  ${result.handoffOut ? 'out' : 'none'.padEnd(3)}      ${result.handoffTruthful}`,
          );
        }
      }
    }
    const energyAware = await energyScenario(broker, dir.path);
    console.log(JSON.stringify({ cases: cases.map(({ entries: _entries, wireBytesPerEntry: _wire, handoffOut: _out, ...rest }) => rest), energyAware }));
  } finally {
    await broker.stop();
    await dir.remove();
  }
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => killAll());
