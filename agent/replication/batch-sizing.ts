/**
 * How large a batch is, and how many go at once: the rules that size one for the link it goes out on and for
 * the broker's packet limit, and that bound the window and the bytes in flight during the brownout flush. Pure functions of the numbers the
 * publisher measured (DrainMeter) and the brokers announced; the publisher and the prepared tail
 * (prepared-tail.ts) both size their batches here, so that what is prepared is what the flush would send.
 */
import type { LogEntry } from '../log/index.ts';
import type { PublishLink } from './publisher-options.ts';
import { BATCH_OVERHEAD_BYTES_PER_ENTRY } from './wire.ts';

/**
 * Bytes reserved for the envelope (version, kind, CRC, a 32-byte MAC, map and string heads) and the batch
 * header (group, node, epoch, first, last): about 150 with names of 32 characters; 512 leaves room.
 */
export const BATCH_HEADER_BYTES = 512;
/**
 * On battery, batches are sized to the link once its drain rate is measured with a full window (DrainMeter):
 * about this much time on the wire each.
 * A batch counts only when all of it is acknowledged, so on a slow link a half-megabyte batch would be
 * seconds of hold-up energy that save nothing if the power goes first (measured by bench:holdup). With the
 * window of 8 in flight this still fills any path whose round trip is under 8 × this.
 */
export const BATCH_LINK_MS = 50;
/** Smallest link-sized batch: a few typical entries, so a latency-bound estimate cannot shrink batches to one. */
export const BATCH_LINK_BYTES_MIN = 4 * 1024;
/**
 * During the brownout flush the bytes in flight are kept to this much time at the measured rate (and at
 * least two batches, so the link never waits for an acknowledgement): what is queued on the link when the
 * budget ends delays the handoff record behind it. A batch is acknowledged about a batch's time plus a
 * round trip after it left, so this covers round trips up to about 250 ms at full rate.
 */
export const FLUSH_INFLIGHT_MS = 300;

/**
 * replication.coalesce: what was committed goes without waiting for the batch in flight once it holds this
 * many bytes or entries (or half the batch limits, if smaller). A batch's fixed costs (its signature made
 * and checked, the replica's fdatasync and signed ack: about 0.5 ms of CPU over both nodes on this project's
 * test machines) are then a few µs per entry, under what each entry costs on its own; waiting longer would
 * only add lag.
 */
export const COALESCE_BYTES = 64 * 1024;
export const COALESCE_ENTRIES = 256;

/** Whether `entries` committed entries of `bytes` are a batch worth sending while another is in flight. */
export function fullEnoughToSend(entries: number, bytes: number, batchBytes: number, batchEntriesMax: number): boolean {
  return entries >= Math.min(COALESCE_ENTRIES, batchEntriesMax / 2) || bytes >= Math.min(COALESCE_BYTES, batchBytes / 2);
}

/** The largest batch every link takes: the configured limit, or less where a broker announced less. */
export function linksPayloadBytesMax(links: readonly PublishLink[], topic: string, configured: number): number {
  let bytes = configured;
  for (const link of links) bytes = Math.min(bytes, link.payloadBytesMax(topic) ?? Infinity);
  return bytes;
}

/** The window never exceeds what the brokers said they can take (MQTT 5 Receive Maximum). */
export function linksWindowMax(links: readonly PublishLink[], configured: number): number {
  let window = configured;
  for (const link of links) if (link.info) window = Math.min(window, link.info.receiveMaximum);
  return window;
}

/**
 * The batch size for this link: on battery (flushing), BATCH_LINK_MS at the measured rate `bytesPerS`,
 * within the broker's limit. On mains the largest batches: a rate measured while a path was down would
 * shrink them, and many small batches overflow a broker's queue for a sibling that is away
 * (max_queued_messages), which then costs resends.
 */
export function linkBatchBytes(payloadBytesMax: number, bytesPerS: number | undefined, flushing: boolean): number {
  if (!flushing || bytesPerS === undefined) return payloadBytesMax;
  return Math.min(payloadBytesMax, Math.max(BATCH_LINK_BYTES_MIN, Math.round((bytesPerS * BATCH_LINK_MS) / 1000)));
}

/** Bytes the brownout flush keeps in flight at most at `bytesPerS`, with batches of `batchBytes`. */
export function flushInflightBytesMax(batchBytes: number, bytesPerS: number | undefined): number {
  return bytesPerS === undefined ? Infinity : Math.max(2 * batchBytes, (bytesPerS * FLUSH_INFLIGHT_MS) / 1000);
}

/**
 * How long before the hold-up budget ends the flush must stop waiting and publish the handoff record, so
 * that the record is on the brokers, and their acknowledgement back, by then: it waits behind the
 * `bytesInFlight` not yet acknowledged, drained at `bytesPerS` (those already across stand for its own trip
 * there), and its acknowledgement comes back half a round trip later. Undefined until the link is measured.
 */
export function handoffLeadMs(bytesInFlight: number, bytesPerS: number | undefined, roundTripMs: number | undefined): number | undefined {
  if (bytesPerS === undefined || roundTripMs === undefined) return undefined;
  return (bytesInFlight * 1000) / bytesPerS + roundTripMs / 2;
}

/**
 * Payload bytes to read for a batch of at most `batchBytes` on the wire: leave room for the header and the
 * per-entry CBOR overhead of a full batch, unless that would halve the batch (a small broker limit); then
 * read more and let `fitBatch` trim.
 */
export function readBytesMax(batchBytes: number, entriesMax: number): number {
  const room = batchBytes - BATCH_HEADER_BYTES;
  const reserved = entriesMax * BATCH_OVERHEAD_BYTES_PER_ENTRY;
  return reserved <= room / 2 ? room - reserved : room;
}

/** Drop entries from the end until the batch surely fits in `batchBytes` (at least one entry stays). */
export function fitBatch(entries: LogEntry[], batchBytes: number): LogEntry[] {
  let bytes = BATCH_HEADER_BYTES;
  for (let count = 0; count < entries.length; count++) {
    bytes += entries[count]!.payload.length + BATCH_OVERHEAD_BYTES_PER_ENTRY;
    if (bytes > batchBytes) return entries.slice(0, Math.max(1, count));
  }
  return entries;
}
