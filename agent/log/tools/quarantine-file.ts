/** Reading back what a demotion or recovery set aside, for an operator to replay or to audit. */
import { LastgaspError } from '../../util/index.ts';
import { RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, RECORD_TYPE_ENTRY, SEGMENT_HEADER_BYTES, decodeSegmentHeader, saltSeed } from '../format.ts';
import { readFully } from '../probe.ts';
import { ChunkReader, findNextValid, scanRecords } from '../scan.ts';
import { createNodeStorage, type Storage } from '../storage/index.ts';
import type { LogEntry } from '../types.ts';

/**
 * The entries in one quarantine file (a segment's header followed by the records set aside), in file order,
 * each checked by CRC. What a demotion or recovery moved out of the log, for an operator to replay or to
 * audit. Records that do not decode are skipped (a copy recovery made starts at the broken record).
 */
export async function readQuarantineFile(path: string, storage: Storage = createNodeStorage()): Promise<LogEntry[]> {
  const file = await storage.open(path, 'read');
  try {
    const header = new Uint8Array(SEGMENT_HEADER_BYTES);
    const got = await readFully(file, header, 0);
    const decoded = decodeSegmentHeader(header.subarray(0, got));
    if (!decoded.ok) throw new LastgaspError('LOG_CORRUPT', `${path} is not a quarantine file: ${decoded.reason}`, { file: path });
    const entries: LogEntry[] = [];
    const size = await file.size();
    // No record is larger than the file: small files get a small buffer.
    const payloadBytesMax = Math.min(RECORD_PAYLOAD_BYTES_MAX, size);
    const reader = new ChunkReader(payloadBytesMax, Math.min(256 * 1024, size));
    const seed = saltSeed(decoded.header.salt);
    // Recovery's copies start at the broken record and may hold gaps (a torn write): read every valid stretch.
    let offset = SEGMENT_HEADER_BYTES;
    let lastSeq = 0;
    while (offset < size) {
      const run = await scanRecords(file, reader, seed, offset, size, payloadBytesMax, (record, bytes, _view, at) => {
        if (record.type === RECORD_TYPE_ENTRY) {
          const start = at + RECORD_HEADER_BYTES;
          entries.push({ seq: record.seq, epoch: record.epoch, timestampMs: record.timestampMs, payload: bytes.slice(start, start + record.payloadBytes) });
          lastSeq = Math.max(lastSeq, record.seq);
        }
        return true;
      });
      if (run.end >= size) break;
      const next = await findNextValid(file, reader, seed, run.end, size, payloadBytesMax, lastSeq);
      if (next === undefined) break;
      offset = next;
    }
    return entries;
  } finally {
    await file.close();
  }
}
