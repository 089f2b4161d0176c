// Process-level crash tests on the real disk: a writer process is killed with SIGKILL at random moments,
// many times over the same directory, and after each kill the log must hold every entry it acknowledged,
// as a gap-free run, with watermarks that never went backwards. A second test kills a process while it
// demotes (quarantineAfter): every acknowledged entry must then be in the log or in a quarantine file,
// never both, and in quarantine only once its demotion was reported done.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog, readQuarantineFile } from '../../agent/log/index.ts';
import { killAll, startProcess } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { readdirSync } from 'node:fs';
import { mulberry32 } from './support/random.ts';

after(killAll);

const WRITER = new URL('./support/writer.ts', import.meta.url).pathname;
const KILLS = 12;
const DEMOTER = new URL('./support/demoter.ts', import.meta.url).pathname;
const DEMOTION_KILLS = 8;

test('SIGKILL of a writer process at random moments loses no acknowledged entry', async () => {
  const seed = Number(process.env.LASTGASP_TEST_SEED ?? Date.now() % 1_000_000);
  const random = mulberry32(seed);
  const dir = await tempDir('sigkill');
  const acked = new Map<number, string>();
  let durableReplicated = 0;
  try {
    for (let round = 0; round < KILLS; round++) {
      const child = startProcess(`writer-${round}`, process.execPath, ['--import', 'tsx', WRITER, dir.path, '8', String(64 * 1024)]);
      await child.waitForOutput(/^A \d+ /m, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.floor(random() * 300)));
      await child.kill('SIGKILL');
      // Only complete lines count: a line cut by the kill promised nothing we can read.
      const lines = child.output().split('\n').slice(0, -1);
      for (const line of lines) {
        const [kind, a, b] = line.split(' ');
        if (kind === 'A') acked.set(Number(a), b!);
        if (kind === 'W') durableReplicated = Math.max(durableReplicated, Number(a));
      }
      const log = createFlashLog({ dir: dir.path, segmentBytes: 64 * 1024 });
      const report = await log.open();
      const marks = log.watermarks();
      assert.ok(marks.replicated >= durableReplicated, `seed ${seed} round ${round}: replicated ${marks.replicated} went below durable ${durableReplicated}`);
      assert.ok(marks.replicated <= marks.committed, `seed ${seed}: replicated above committed`);
      let expected = log.firstSeq;
      const decoder = new TextDecoder();
      for await (const entry of log.entries(log.firstSeq)) {
        assert.equal(entry.seq, expected, `seed ${seed} round ${round}: gap at ${expected}`);
        const promised = acked.get(entry.seq);
        if (promised !== undefined) assert.equal(decoder.decode(entry.payload), promised, `seed ${seed}: seq ${entry.seq} changed`);
        expected++;
      }
      assert.equal(expected - 1, report.committed, `seed ${seed}: iteration ended before committed`);
      for (const seq of acked.keys()) assert.ok(seq <= report.committed, `seed ${seed} round ${round}: acknowledged seq ${seq} lost (committed ${report.committed})`);
      // Entries past the end were never acknowledged by anyone; forget them so the next writer may reuse the seqs.
      for (const seq of [...acked.keys()]) if (seq > report.committed) acked.delete(seq);
      await log.close();
    }
    assert.ok(acked.size > 0, 'the writers acknowledged something');
  } finally {
    await dir.remove();
  }
});

interface Demotion {
  keep: number;
  /** Line index of `Q keep start` and of `Q keep done` (Infinity while it was under way at the kill). */
  started: number;
  done: number;
}

test('SIGKILL during demotions: every acknowledged entry is in the log or set aside, never both', async () => {
  const seed = Number(process.env.LASTGASP_TEST_SEED ?? Date.now() % 1_000_000);
  const random = mulberry32(seed);
  const decoder = new TextDecoder();
  let checked = 0;
  let inFlight = 0;
  for (let round = 0; round < DEMOTION_KILLS; round++) {
    const dir = await tempDir('sigkill-demote');
    try {
      const child = startProcess(`demoter-${round}`, process.execPath, ['--import', 'tsx', DEMOTER, dir.path, String(seed + round)]);
      // Let a demotion complete, then kill a few milliseconds after the next one starts: a demotion takes
      // half a dozen fsyncs, so the kill often lands inside it.
      await child.waitForOutput(/^Q \d+ done\n(?:.*\n)*?Q \d+ start$/m, 30_000);
      await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 12)));
      await child.kill('SIGKILL');
      const lines = child.output().split('\n').slice(0, -1);
      const acked: Array<{ seq: number; text: string; line: number }> = [];
      const demotions: Demotion[] = [];
      lines.forEach((line, index) => {
        const [kind, a, b] = line.split(' ');
        if (kind === 'A') acked.push({ seq: Number(a), text: b!, line: index });
        else if (kind === 'Q' && b === 'start') demotions.push({ keep: Number(a), started: index, done: Number.POSITIVE_INFINITY });
        else if (kind === 'Q' && b === 'done') demotions[demotions.length - 1]!.done = index;
      });
      const log = createFlashLog({ dir: dir.path, segmentBytes: 64 * 1024 });
      await log.open();
      const inLog = new Set<string>();
      let expected = log.firstSeq;
      for await (const entry of log.entries(log.firstSeq)) {
        assert.equal(entry.seq, expected, `seed ${seed} round ${round}: gap at ${expected}`);
        inLog.add(decoder.decode(entry.payload));
        expected++;
      }
      await log.close();
      const aside = new Map<string, number>();
      for (const name of readdirSync(dir.path).filter((n) => n.startsWith('quarantine-') && n.endsWith('.log'))) {
        for (const entry of await readQuarantineFile(`${dir.path}/${name}`)) {
          const text = decoder.decode(entry.payload);
          aside.set(text, (aside.get(text) ?? 0) + 1);
        }
      }
      for (const [text, count] of aside) {
        assert.ok(!inLog.has(text), `seed ${seed} round ${round}: ${text.trim()} is in the log and in quarantine`);
        assert.equal(count, 1, `seed ${seed} round ${round}: ${text.trim()} is in ${count} quarantine files`);
      }
      for (const entry of acked) {
        // The demotions that could have taken this entry: not finished before it was acknowledged, cutting below its seq.
        const takers = demotions.filter((d) => d.done > entry.line && d.keep < entry.seq);
        const where = `seed ${seed} round ${round}: acknowledged seq ${entry.seq} (${entry.text.replace(/\.+$/, '')})`;
        if (takers.some((d) => d.done !== Number.POSITIVE_INFINITY)) {
          assert.equal(aside.get(entry.text), 1, `${where} was set aside by a finished demotion but is not in quarantine`);
        } else if (takers.length > 0) {
          inFlight++;
          assert.ok(inLog.has(entry.text) !== aside.has(entry.text), `${where} is in ${inLog.has(entry.text) ? 'both the log and quarantine' : 'neither the log nor quarantine'}`);
        } else {
          assert.ok(inLog.has(entry.text), `${where} is missing from the log`);
        }
        checked++;
      }
    } finally {
      await killAll();
      await dir.remove();
    }
  }
  assert.ok(checked > 0, 'entries were acknowledged and checked');
  console.log(`sigkill during demotion: ${checked} acknowledged entries checked over ${DEMOTION_KILLS} kills, ${inFlight} of them under a demotion cut short`);
});
