/**
 * Runs under Deno 2 (`deno run -A`): the real node:fs storage, group commit, a torn tail, reopen and read,
 * then inspect and verify. Prints one JSON line with what it saw.
 */
import { createFlashLog, inspectLog, verifyLog } from '../../../agent/log/index.ts';
import { openSync, writeSync, closeSync } from 'node:fs';

const dir = (globalThis as unknown as { Deno: { args: string[] } }).Deno.args[0]!;
const log = createFlashLog({ dir, segmentBytes: 64 * 1024 });
await log.open();
// The directory lock works with Deno's node:fs too: a second open is refused while the first holds it.
const second = createFlashLog({ dir, segmentBytes: 64 * 1024 });
const lockedCode = await second.open().then(
  () => 'opened',
  (error: { code?: string }) => error.code,
);
const results = await Promise.all(Array.from({ length: 500 }, (_, i) => log.append(new TextEncoder().encode(`deno-${i}`.padEnd(100)))));
log.markReplicated(250);
await log.syncWatermarks();
const segment = log.status().segments.at(-1)!;
const syncs = log.status().counters.syncs;
await log.close();
const fd = openSync(segment.file, 'r+');
writeSync(fd, new Uint8Array(40).fill(0xee), 0, 40, segment.bytesUsed);
closeSync(fd);
const again = createFlashLog({ dir, segmentBytes: 64 * 1024 });
const report = await again.open();
const read = await again.read(499, { entriesMax: 10, bytesMax: 1 << 20 });
await again.close();
const verify = await verifyLog(dir);
const inspect = await inspectLog(dir);
console.log(
  JSON.stringify({
    lastSeq: results.at(-1)!.seq,
    syncs,
    committed: report.committed,
    replicated: again.watermarks().replicated,
    read: read.map((e) => new TextDecoder().decode(e.payload).trim()),
    verifyOk: verify.ok,
    inspectCommitted: inspect.committed,
    segments: inspect.segments.length,
    lockedCode,
  }),
);
