/**
 * A process for the demotion crash test: appends entries from several writers, then demotes (sets aside
 * everything after a recent seq) while the writers go on, and again, printing `A <seq> <payload>` per
 * acknowledged append, `Q <keep> start` before and `Q <keep> done` after each demotion, so that the parent
 * knows what was promised when it killed us.
 *
 *   node --import tsx test/log/support/demoter.ts DIR SEED
 */
import { createFlashLog } from '../../../agent/log/index.ts';
import { isLastgaspError } from '../../../agent/util/index.ts';
import { mulberry32, randomInt } from './random.ts';

const [dir, seedArg] = process.argv.slice(2);
if (!dir) throw new Error('usage: demoter.ts DIR SEED');
const random = mulberry32(Number(seedArg ?? '1'));
const log = createFlashLog({ dir, segmentBytes: 64 * 1024 });
const report = await log.open();
process.stdout.write(`O ${report.committed}\n`);
const encoder = new TextEncoder();
let counter = 0;

async function writer(id: number): Promise<void> {
  for (;;) {
    const text = `${process.pid}-${id}-${counter++}`.padEnd(200, '.');
    try {
      const result = await log.append(encoder.encode(text));
      process.stdout.write(`A ${result.seq} ${text}\n`);
    } catch (error) {
      // Appends are refused (LOG_SEQ) while a demotion cuts the log; the writer waits a moment and goes on.
      if (!isLastgaspError(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
}

async function demoter(): Promise<void> {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 5 + randomInt(random, 40)));
    const keep = Math.max(log.firstSeq - 1, log.watermarks().committed - 1 - randomInt(random, 300));
    process.stdout.write(`Q ${keep} start\n`);
    await log.quarantineAfter(keep);
    process.stdout.write(`Q ${keep} done\n`);
  }
}

for (let i = 0; i < 4; i++) void writer(i);
void demoter();
