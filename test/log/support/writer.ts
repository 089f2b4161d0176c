/**
 * A writer process for the SIGKILL tests: appends entries as fast as the log acknowledges them from several
 * concurrent writers, and prints one line per acknowledgement (`A <seq> <payload>`) and per durable watermark
 * (`W <replicated>`), so that the parent knows exactly what was promised before it killed us.
 *
 *   node --import tsx test/log/support/writer.ts DIR WRITERS SEGMENT_BYTES
 */
import { createFlashLog } from '../../../agent/log/index.ts';

const [dir, writersArg, segmentArg] = process.argv.slice(2);
if (!dir) throw new Error('usage: writer.ts DIR WRITERS SEGMENT_BYTES');
const writers = Number(writersArg ?? '4');
const segmentBytes = Number(segmentArg ?? String(64 * 1024));
const log = createFlashLog({ dir, segmentBytes });
const report = await log.open();
process.stdout.write(`O ${report.committed} ${report.epoch}\n`);
const encoder = new TextEncoder();
const pid = process.pid;
let counter = 0;

async function writer(id: number): Promise<void> {
  for (;;) {
    const text = `${pid}-${id}-${counter++}`;
    const result = await log.append(encoder.encode(text));
    process.stdout.write(`A ${result.seq} ${text}\n`);
  }
}

async function replicator(): Promise<void> {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    const { committed } = log.watermarks();
    // Pretend replication lags behind by a few entries, then make it durable.
    log.markReplicated(Math.max(0, committed - 7));
    await log.syncWatermarks();
    process.stdout.write(`W ${log.watermarks().replicated}\n`);
  }
}

for (let i = 0; i < writers; i++) void writer(i);
void replicator();
