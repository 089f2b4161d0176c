// Process-level crash test on the real disk: a writer process is killed with SIGKILL at random moments,
// many times over the same directory, and after each kill the log must hold every entry it acknowledged,
// as a gap-free run, with watermarks that never went backwards.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog } from '../../agent/log/index.ts';
import { killAll, startProcess } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';
import { mulberry32 } from './support/random.ts';

after(killAll);

const WRITER = new URL('./support/writer.ts', import.meta.url).pathname;
const KILLS = 12;

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
