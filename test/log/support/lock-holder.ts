/**
 * A process that opens a log directory and holds it, for the lock tests: prints `OPENED <pid>` and stays
 * until killed, or, if the directory is taken, prints `REFUSED <json of the error>` and exits with 3.
 *
 *   node --import tsx test/log/support/lock-holder.ts DIR
 */
import { createFlashLog } from '../../../agent/log/index.ts';
import { isLastgaspError } from '../../../agent/util/index.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: lock-holder.ts DIR');
const log = createFlashLog({ dir, segmentBytes: 64 * 1024 });
try {
  await log.open();
} catch (error) {
  if (!isLastgaspError(error)) throw error;
  process.stdout.write(`REFUSED ${JSON.stringify({ code: error.code, message: error.message, detail: error.detail })}\n`);
  process.exit(3);
}
process.stdout.write(`OPENED ${process.pid}\n`);
setInterval(() => undefined, 60_000);
