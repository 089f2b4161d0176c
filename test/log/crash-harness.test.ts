// The crash-consistency harness: a seeded workload runs on the simulated storage; before every sync, the
// harness builds the crash states that a power cut at that instant could leave (every prefix of the pending
// operations, each one dropped with later ones kept, writes torn at 512 B and 4 KiB boundaries with zeros or
// old bytes, a file grown without its data, a flipped bit), recovers each, and checks the invariants:
// every acknowledged append is present, the log is a gap-free run of valid records, watermarks and epoch are
// monotone and within the log, and no segment holding unreplicated entries was deleted. The workload also
// demotes (quarantineAfter) partway: at every crash state during it, each acknowledged entry after the cut is
// in the log or in a quarantine file, never both, and once it resolved they are in quarantine only. A second
// workload fails an fdatasync and checks that the log stops, recovers from disk, and still keeps its promises.
// Deterministic from the seed; set LASTGASP_CRASH_SEED to replay one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimStorage, createFlashLog, readQuarantineFile, type AppliedOp, type LogEntry, type PendingOp } from '../../agent/log/index.ts';
import { isLastgaspError, type Clock } from '../../agent/util/index.ts';
import { mulberry32, randomInt } from './support/random.ts';

const DIR = 'sim/log';
const SEGMENT_BYTES = 16 * 1024;
const ENTRY_BYTES_MAX = 1500;
/** Torn writes are cut at these boundaries (a 512 B sector, a 4 KiB page). */
const TEAR_BOUNDARIES = [512, 4096];
/** Split points tried per write and boundary: first, middle and last, which cover the distinct outcomes. */
const SPLITS_PER_WRITE = 3;
/** Every this many crash states also gets a second crash after appends on the recovered log. */
const DOUBLE_CRASH_EVERY = 3;
const SEEDS = process.env.LASTGASP_CRASH_SEED ? [Number(process.env.LASTGASP_CRASH_SEED)] : [1, 2, 3, 4, 5, 6, 7, 8];
/** The failing-fdatasync workloads run each of these seeds at four sync points (each workload explores every state again). */
const FAULT_SEEDS = SEEDS.slice(0, 4);

/** A clock whose timers never fire: the workload makes watermarks durable explicitly, so runs replay exactly. */
function frozenClock(): Clock {
  let now = 1_700_000_000_000;
  return {
    nowMs: () => now++,
    monotonicMs: () => now,
    setTimeout: () => ({ cancel: () => undefined }),
  };
}

interface Promises {
  /** seq → payload of every append whose promise resolved. */
  acked: Map<number, Uint8Array>;
  replicated: number;
  replicaAcked: number;
  epoch: number;
  /** While a demotion runs (or after one failed): entries after this seq may be in the log or in quarantine. */
  demotingAfter: number | undefined;
  /** Acknowledged entries a completed demotion set aside: in a quarantine file, not in the log. */
  setAside: Uint8Array[];
}

function clonePromises(p: Promises): Promises {
  return { acked: new Map(p.acked), replicated: p.replicated, replicaAcked: p.replicaAcked, epoch: p.epoch, demotingAfter: p.demotingAfter, setAside: [...p.setAside] };
}

/** Workload payloads start with this tag and a unique counter, so that an entry is recognised wherever it lands. */
const TAG = [0x4c, 0x47, 0x57, 0x4b];
const TAG_BYTES = 8;

function identity(payload: Uint8Array): string | undefined {
  if (payload.length < TAG_BYTES || TAG.some((byte, i) => payload[i] !== byte)) return undefined;
  return Array.from(payload.subarray(0, TAG_BYTES), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** How many times each tagged entry appears in the quarantine files of a storage. */
async function quarantined(storage: SimStorage): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const name of await storage.list(DIR)) {
    if (!name.startsWith('quarantine-') || !name.endsWith('.log')) continue;
    let entries: LogEntry[];
    try {
      entries = await readQuarantineFile(`${DIR}/${name}`, storage);
    } catch {
      continue;
    }
    for (const entry of entries) {
      const key = identity(entry.payload);
      if (key !== undefined) counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

function openOptions(storage: SimStorage, random: () => number) {
  return {
    dir: DIR,
    segmentBytes: SEGMENT_BYTES,
    entryBytesMax: ENTRY_BYTES_MAX,
    storage,
    clock: frozenClock(),
    randomSalt: () => Math.floor(random() * 0x1_0000_0000) >>> 0,
    watermarkLingerMs: 1_000_000,
  };
}

/** The crash states for one set of pending operations. */
function* crashStates(pending: readonly PendingOp[], random: () => number): Generator<{ applied: AppliedOp[]; label: string }> {
  const all = pending.map((op) => ({ op }));
  for (let k = 0; k <= pending.length; k++) yield { applied: all.slice(0, k), label: `prefix ${k}/${pending.length}` };
  if (pending.length > 1) {
    for (let j = 0; j < pending.length - 1; j++) yield { applied: all.filter((_, i) => i !== j), label: `omit ${j}/${pending.length}` };
  }
  for (let j = 0; j < pending.length; j++) {
    const op = pending[j]!;
    if (op.kind !== 'write' || op.bytes.length <= 512) continue;
    for (const boundary of TEAR_BOUNDARIES) {
      // Cut points on device boundaries (absolute file offsets), inside the write.
      const cuts: number[] = [];
      for (let at = Math.ceil((op.offset + 1) / boundary) * boundary; at < op.offset + op.bytes.length; at += boundary) cuts.push(at - op.offset);
      if (cuts.length === 0) continue;
      const picks = new Set([cuts[0]!, cuts[cuts.length >> 1]!, cuts[cuts.length - 1]!].slice(0, SPLITS_PER_WRITE));
      for (const cut of picks) {
        for (const lost of ['zeros', 'old'] as const) {
          yield { applied: [...all.slice(0, j), { op, keep: [[0, cut]], lost }], label: `torn head ${cut}/${op.bytes.length} @${boundary} ${lost}` };
          yield { applied: [...all.slice(0, j), { op, keep: [[cut, op.bytes.length]], lost }], label: `torn tail ${cut}/${op.bytes.length} @${boundary} ${lost}` };
        }
      }
    }
    yield { applied: [...all.slice(0, j), { op, keep: [], lost: 'zeros' }], label: `grown without data ${j}` };
  }
  void random;
}

interface Explorer {
  states: number;
  flips: number;
  /** States explored while a demotion was under way. */
  demotion: number;
}

async function checkState(
  image: SimStorage,
  promised: Promises,
  random: () => number,
  context: string,
  flippedSeqFloor: number | undefined,
  doubleCrash: boolean,
): Promise<void> {
  const log = createFlashLog(openOptions(image, random));
  let report;
  try {
    report = await log.open();
  } catch (error) {
    assert.fail(`${context}: open threw ${(error as Error).message}`);
  }
  try {
    const marks = log.watermarks();
    assert.ok(marks.replicated <= marks.committed && marks.replicaAcked <= marks.committed, `${context}: watermarks above committed`);
    if (flippedSeqFloor === undefined) {
      assert.ok(marks.replicated >= promised.replicated, `${context}: replicated ${marks.replicated} < durable ${promised.replicated}`);
      assert.ok(marks.replicaAcked >= promised.replicaAcked, `${context}: replicaAcked ${marks.replicaAcked} < durable ${promised.replicaAcked}`);
      assert.ok(log.epoch >= promised.epoch, `${context}: epoch ${log.epoch} < durable ${promised.epoch}`);
    }
    // Retention never removes unreplicated entries. (A flipped bit in an old segment's head makes recovery set
    // that segment aside, which must then be reported as quarantine.)
    if (flippedSeqFloor === undefined) {
      assert.ok(log.firstSeq - 1 <= Math.max(marks.replicated, promised.replicated), `${context}: segment with unreplicated entries deleted (firstSeq ${log.firstSeq})`);
    } else if (log.firstSeq - 1 > Math.max(marks.replicated, promised.replicated)) {
      assert.ok(log.status().quarantine.length > 0, `${context}: entries below firstSeq ${log.firstSeq} vanished without a quarantine file`);
    }
    let expected = log.firstSeq;
    const inLog = new Set<string>();
    const aside = await quarantined(image);
    const demoting = promised.demotingAfter;
    try {
      for await (const entry of log.entries(log.firstSeq)) {
        assert.equal(entry.seq, expected, `${context}: gap at ${expected}`);
        const payload = promised.acked.get(entry.seq);
        const key = identity(entry.payload);
        if (key !== undefined) inLog.add(key);
        // After the cut of a demotion that may have happened, a seq may hold a newer entry; the acknowledged one is then in quarantine.
        const movedAside = demoting !== undefined && entry.seq > demoting && payload !== undefined && (aside.get(identity(payload) ?? '') ?? 0) > 0;
        if (payload && !movedAside) assert.deepEqual(entry.payload, payload, `${context}: seq ${entry.seq} differs from what was acknowledged`);
        expected++;
      }
      assert.equal(expected - 1, report.committed, `${context}: entries end at ${expected - 1}, committed ${report.committed}`);
    } catch (error) {
      // A flipped bit in a segment older than the active one is past the recovery checkpoint: reads must
      // detect it (typed LOG_CORRUPT), never return wrong bytes.
      if (!(flippedSeqFloor !== undefined && isLastgaspError(error, 'LOG_CORRUPT'))) throw error;
      return;
    }
    for (const [key, count] of aside) {
      assert.ok(!inLog.has(key), `${context}: entry ${key} is both in the log and in a quarantine file`);
      if (flippedSeqFloor === undefined) assert.equal(count, 1, `${context}: entry ${key} is in ${count} quarantine places`);
    }
    for (const payload of promised.setAside) {
      assert.equal(aside.get(identity(payload)!) ?? 0, 1, `${context}: entry ${identity(payload)} set aside by the demotion is not in exactly one quarantine file`);
    }
    for (const [seq, payload] of promised.acked) {
      if (seq < log.firstSeq) continue;
      if (flippedSeqFloor !== undefined && seq >= flippedSeqFloor) continue;
      const key = identity(payload);
      if (demoting !== undefined && seq > demoting && key !== undefined) {
        assert.ok(inLog.has(key) !== (aside.get(key) ?? 0) > 0, `${context}: acknowledged seq ${seq} after the demotion cut at ${demoting} is ${inLog.has(key) ? 'in both the log and quarantine' : 'in neither the log nor quarantine'}`);
        continue;
      }
      assert.ok(seq <= report.committed, `${context}: acknowledged seq ${seq} lost (committed ${report.committed}, torn ${report.tornBytes}, quarantined ${report.quarantinedRecords})`);
    }
    // The recovered log takes appends; then a second crash (synced state only) must keep them and bring back
    // nothing that the first recovery dropped (bytes of a torn batch lining up behind the new appends).
    const next = await log.append(Uint8Array.of(1, 2, 3));
    assert.equal(next.seq, report.committed + 1, `${context}: append after recovery`);
    if (!doubleCrash) return;
    const again = clonePromises(promised);
    for (const [seq, payload] of again.acked) {
      const key = identity(payload);
      // Set aside by the demotion this recovery finished: from now on they belong in quarantine only.
      if (key !== undefined && !inLog.has(key) && (aside.get(key) ?? 0) > 0) again.setAside.push(payload);
      if (seq > report.committed || (key !== undefined && !inLog.has(key))) again.acked.delete(seq);
    }
    again.acked.set(next.seq, Uint8Array.of(1, 2, 3));
    const more = await Promise.all([40, 260, 700].map((size) => log.append(new Uint8Array(size).fill(size & 0xff))));
    for (const [i, result] of more.entries()) again.acked.set(result.seq, new Uint8Array([40, 260, 700][i]!).fill([40, 260, 700][i]! & 0xff));
    again.replicated = Math.max(again.replicated, marks.replicated);
    again.replicaAcked = Math.max(again.replicaAcked, marks.replicaAcked);
    again.epoch = Math.max(again.epoch, log.epoch);
    await checkState(image.crashImage([]), again, random, `${context} + second crash`, flippedSeqFloor, false);
  } finally {
    await log.close();
  }
}

async function runWorkload(seed: number, failSyncAt: number | undefined): Promise<Explorer> {
  const random = mulberry32(seed);
  const storage = new SimStorage();
  if (failSyncAt !== undefined) storage.faults.failSyncAt = failSyncAt;
  const promised: Promises = { acked: new Map(), replicated: 0, replicaAcked: 0, epoch: 1, demotingAfter: undefined, setAside: [] };
  let tagged = 0;
  const explorer: Explorer = { states: 0, flips: 0, demotion: 0 };
  const checkRandom = mulberry32(seed ^ 0x5bd1e995);
  // A failed check must fail the test, not surface inside the log under test as an I/O error of its sync.
  let failure: unknown;
  storage.beforeSync = async (sim) => {
    if (failure !== undefined) return;
    try {
      await explore(sim);
    } catch (error) {
      failure = error;
    }
  };
  const explore = async (live: SimStorage) => {
    const snapshot = clonePromises(promised);
    // Frozen: the workload's other tasks keep writing and syncing while these states are checked.
    const sim = live.freeze();
    const pending = sim.pendingOps();
    for (const state of crashStates(pending, random)) {
      explorer.states++;
      if (snapshot.demotingAfter !== undefined) explorer.demotion++;
      await checkState(sim.crashImage(state.applied), snapshot, checkRandom, `seed ${seed}${failSyncAt ? ` failSyncAt ${failSyncAt}` : ''}: ${state.label}`, undefined, explorer.states % DOUBLE_CRASH_EVERY === 0);
    }
    // A flipped bit in a durable record of the active segment: entries before it must survive, the log must open.
    const files = sim.durableFiles().filter((f) => f.path.includes('/seg-') && f.size > 200);
    if (files.length > 0 && random() < 0.3) {
      const file = files[randomInt(random, files.length)]!;
      const offset = 64 + randomInt(random, file.size - 64);
      explorer.states++;
      explorer.flips++;
      // Entries from the first one in the flipped segment on may be set aside; everything before must stay.
      await checkState(sim.crashImage([], { path: file.path, offset, bit: randomInt(random, 8) }), snapshot, checkRandom, `seed ${seed}: flip ${file.path}@${offset}`, 0, false);
    }
  };

  const log = createFlashLog(openOptions(storage, random));
  await log.open();
  // Demotion: the entries after a recent seq leave for quarantine while the writers go on.
  // Appends refused while a demotion runs are retried once it is done, as the error says, not given up: a
  // fault early in the workload would otherwise leave nothing acknowledged to check.
  let demoting: Promise<void> | undefined;
  const demote = async () => {
    let done!: () => void;
    demoting = new Promise<void>((resolve) => (done = resolve));
    try {
      await demoteOnce();
    } finally {
      demoting = undefined;
      done();
    }
  };
  const demoteOnce = async () => {
    const keep = Math.max(log.firstSeq - 1, log.watermarks().committed - 1 - randomInt(random, 15));
    // Demotion lowers the watermarks to the cut: from here a crash may show either side.
    promised.demotingAfter = keep;
    promised.replicated = Math.min(promised.replicated, keep);
    promised.replicaAcked = Math.min(promised.replicaAcked, keep);
    try {
      await log.quarantineAfter(keep);
    } catch (error) {
      // A failed sync during the demotion: recovery finishes it or drops it; which one stays open, so
      // `demotingAfter` stays set and the check allows either side for the entries after the cut.
      if (!isLastgaspError(error)) throw error;
      await log.whenRecovered();
      return;
    }
    for (const [seq, payload] of [...promised.acked]) {
      if (seq <= keep) continue;
      promised.setAside.push(payload);
      promised.acked.delete(seq);
    }
    promised.demotingAfter = undefined;
  };
  const writers = 4;
  const appendsPerWriter = 15;
  const work: Promise<void>[] = [];
  for (let w = 0; w < writers; w++) {
    work.push(
      (async () => {
        for (let i = 0; i < appendsPerWriter; i++) {
          const payload = new Uint8Array(TAG_BYTES + randomInt(random, 700));
          for (let b = 0; b < payload.length; b++) payload[b] = randomInt(random, 256);
          payload.set(TAG, 0);
          new DataView(payload.buffer).setUint32(4, tagged++, true);
          try {
            const { seq } = await log.append(payload);
            promised.acked.set(seq, payload);
          } catch (error) {
            if (!isLastgaspError(error)) throw error;
            await log.whenRecovered();
            await demoting;
          }
          if (random() < 0.2) await new Promise((resolve) => setImmediate(resolve));
        }
      })(),
    );
  }
  work.push(
    (async () => {
      for (let round = 0; round < 12; round++) {
        await new Promise((resolve) => setImmediate(resolve));
        const { committed } = log.watermarks();
        log.markReplicated(committed - randomInt(random, 10));
        log.markReplicaAcked(committed - randomInt(random, 20));
        log.setRetentionFloor(committed - randomInt(random, 30));
        try {
          await log.syncWatermarks();
          const durable = log.durableWatermarks();
          promised.replicated = Math.max(promised.replicated, durable.replicated);
          promised.replicaAcked = Math.max(promised.replicaAcked, durable.replicaAcked);
          if (round === 6) {
            await log.beginEpoch(log.epoch + 1);
            promised.epoch = log.epoch;
          }
          if (round === 3 || round === 9) await demote();
        } catch (error) {
          if (!isLastgaspError(error)) throw error;
          await log.whenRecovered();
        }
      }
    })(),
  );
  await Promise.all(work);
  await log.close();
  storage.beforeSync = undefined;
  if (failure !== undefined) throw failure;
  // Finally: the synced state after close must hold everything.
  await checkState(storage.crashImage([]), promised, checkRandom, `seed ${seed}: after close`, undefined, true);
  assert.ok(promised.acked.size > 0, `seed ${seed}: the workload acknowledged appends`);
  if (failSyncAt !== undefined) assert.ok(log.status().counters.faults! >= 0);
  return explorer;
}

test('crash states at every sync point recover with every promise kept', async () => {
  let states = 0;
  let flips = 0;
  let demotion = 0;
  const started = performance.now();
  for (const seed of SEEDS) {
    try {
      const explored = await runWorkload(seed, undefined);
      states += explored.states;
      flips += explored.flips;
      demotion += explored.demotion;
    } catch (error) {
      console.error(`crash harness failed with seed ${seed} (replay: LASTGASP_CRASH_SEED=${seed} npm test -- test/log/crash-harness.test.ts)`);
      throw error;
    }
  }
  console.log(`crash harness: ${states} crash states (${flips} bit flips, ${demotion} during a demotion) from seeds ${SEEDS.join(',')} in ${Math.round(performance.now() - started)} ms`);
  assert.ok(states >= 1000, `explored ${states} states`);
  assert.ok(demotion >= 100, `explored ${demotion} states during demotions`);
});

test('a failing fdatasync stops appends, recovers from disk and keeps every promise', async () => {
  let faults = 0;
  for (const seed of FAULT_SEEDS) {
    for (const failSyncAt of [5, 9, 14, 22]) {
      try {
        await runWorkload(seed * 100 + failSyncAt, failSyncAt);
        faults++;
      } catch (error) {
        console.error(`fault workload failed: seed ${seed * 100 + failSyncAt} failSyncAt ${failSyncAt}`);
        throw error;
      }
    }
  }
  assert.equal(faults, FAULT_SEEDS.length * 4);
});
