/** Reading back what a demotion or recovery set aside, for an operator to replay or to audit. */
import { LastgaspError } from '../../util/index.ts';
import { RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, RECORD_TYPE_ENTRY, SEGMENT_HEADER_BYTES, decodeSegmentHeader, saltSeed } from '../format.ts';
import { readFully } from '../probe.ts';
import { ChunkReader, scanRecords } from '../scan.ts';
import { createNodeStorage, type Storage } from '../storage/index.ts';
import type { LogEntry } from '../types.ts';

/**
 * The entries in one quarantine file (a segment's header followed by the records set aside), in file order,
 * each checked by CRC. What a demotion or recovery moved out of the log, for an operator to replay or to
 * audit; reading stops at the first record that does not decode.
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
    await scanRecords(file, reader, saltSeed(decoded.header.salt), SEGMENT_HEADER_BYTES, size, payloadBytesMax, (record, bytes, _view, at) => {
      if (record.type === RECORD_TYPE_ENTRY) {
        const start = at + RECORD_HEADER_BYTES;
        entries.push({ seq: record.seq, epoch: record.epoch, timestampMs: record.timestampMs, payload: bytes.slice(start, start + record.payloadBytes) });
      }
      return true;
    });
    return entries;
  } finally {
    await file.close();
  }
}
