/**
 * What an append must be before the log admits it: entry sizes under entryBytesMax, a batch that fits one
 * write of the group commit, replicated entries that continue the log's seqs with epochs and stamps that fit
 * the record header. Pure checks returning the typed refusal (or the batch's record bytes); the log rejects
 * the append with it.
 */
import { LastgaspError } from '../util/index.ts';
import { RECORD_U48_MAX, recordBytes } from './format.ts';
import type { LogEntry } from './types.ts';

/** The refusal of one entry of `bytes` over `entryBytesMax`, or undefined. */
export function checkEntry(bytes: number, entryBytesMax: number): LastgaspError | undefined {
  if (bytes <= entryBytesMax) return undefined;
  return new LastgaspError('ENTRY_TOO_LARGE', `entry of ${bytes} bytes exceeds the log's entryBytesMax of ${entryBytesMax}; split it or raise log.entryBytesMax`, {
    bytes,
    max: entryBytesMax,
  });
}

/** An `appendMany` batch: its record bytes, or why it is refused whole. */
export function checkBatch(payloads: readonly Uint8Array[], entryBytesMax: number, batchBytesMax: number): number | LastgaspError {
  let bytes = 0;
  for (let i = 0; i < payloads.length; i++) {
    const length = payloads[i]!.length;
    if (length > entryBytesMax) {
      return new LastgaspError('ENTRY_TOO_LARGE', `entry ${i} of the batch has ${length} bytes, over the log's entryBytesMax of ${entryBytesMax}; split it or raise log.entryBytesMax`, {
        index: i,
        bytes: length,
        max: entryBytesMax,
      });
    }
    bytes += recordBytes(length);
  }
  if (payloads.length === 0) return new LastgaspError('BAD_REQUEST', 'a batch append needs at least one entry');
  if (bytes > batchBytesMax) {
    return new LastgaspError('ENTRY_TOO_LARGE', `a batch of ${bytes} bytes of records is over the ${batchBytesMax} one write of the log can hold; send it as several batches`, {
      bytes,
      max: batchBytesMax,
    });
  }
  return bytes;
}

/** A replica's entries, which must continue at `nextSeq`: their record bytes, or why they are refused. */
export function checkReplicated(entries: readonly LogEntry[], nextSeq: number, committed: number, entryBytesMax: number): number | LastgaspError {
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    if (entry.seq !== nextSeq + i) {
      return new LastgaspError('LOG_SEQ', `replicated entry ${i} has seq ${entry.seq}, expected ${nextSeq + i} (the log's committed end is ${committed})`, {
        expected: nextSeq + i,
        got: entry.seq,
        committed,
      });
    }
    if (entry.payload.length > entryBytesMax) {
      return new LastgaspError('ENTRY_TOO_LARGE', `replicated entry seq ${entry.seq} has ${entry.payload.length} bytes, above entryBytesMax ${entryBytesMax}`, {
        seq: entry.seq,
      });
    }
    if (!(entry.epoch >= 0 && entry.epoch <= 0xffff_ffff) || !(entry.timestampMs >= 0 && entry.timestampMs <= RECORD_U48_MAX)) {
      return new LastgaspError('LOG_SEQ', `replicated entry seq ${entry.seq} has an epoch or timestamp out of range`, { seq: entry.seq });
    }
    bytes += recordBytes(entry.payload.length);
  }
  return bytes;
}
