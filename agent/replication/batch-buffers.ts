/**
 * The buffers batches are encoded into: large ones reused from acknowledged batches, and the one buffer log
 * reads copy payloads into. Owned by the publisher's batch source (batch-source.ts); the publisher gives a
 * buffer back once every link PUBACKed the publish that carried it.
 */

/**
 * Batches at least this large are encoded into buffers reused from acknowledged batches. A fresh buffer of
 * half a MiB comes from the kernel page by page: its page faults cost about as much as encoding the batch
 * (20 of the brownout drain's ms for 27 batches here). Smaller buffers come from malloc's free lists.
 */
export const BATCH_BUFFER_POOLED_BYTES_MIN = 64 * 1024;
/**
 * The pooled batch buffers are dropped once replication has been caught up for about this long: the burst
 * that needed them is over. Dropping them at every catch-up made a publisher that keeps up with a steady
 * stream (caught up between every two commits) allocate fresh half-MiB buffers for nearly every batch: 3 %
 * of its CPU in the end-to-end benchmark, in page faults.
 */
export const BATCH_BUFFERS_IDLE_MS = 1000;

/**
 * Encode buffers for large batches, reused once every link PUBACKed the publish that carried one: by then
 * MQTT.js wrote the packet out (a broker acknowledges only a whole packet) and dropped it from its store.
 * A buffer whose publish failed anywhere is not given back: MQTT.js may still hold it for a resend (it
 * stores publishes without a copy, broker-protocol.ts). At most `keepMax` (the window) are kept, and none
 * once replication is idle.
 */
export class BatchBuffers {
  private readonly free: Uint8Array[] = [];
  private payloadBuffer: Uint8Array | undefined;
  /** Batches encoded into the buffer of an earlier, settled batch (stats: batchBuffersReused). */
  reused = 0;

  constructor(
    private readonly bytesMin: number,
    private readonly keepMax: number,
  ) {}

  /** A buffer of at least `bytes`: a pooled one for a large batch, an exact fresh one for a small one. */
  take(bytes: number): Uint8Array {
    if (bytes < BATCH_BUFFER_POOLED_BYTES_MIN) return new Uint8Array(bytes);
    const index = this.free.findIndex((buffer) => buffer.length >= bytes);
    if (index >= 0) {
      this.reused++;
      return this.free.splice(index, 1)[0]!;
    }
    return new Uint8Array(Math.max(bytes, this.bytesMin));
  }

  /**
   * The buffer that log reads copy payloads into (ReadLimits.payloadBuffer), for reads of up to `bytes`
   * payload bytes; the read's entries are valid until the next read. Reads of one entry (an idle link) need
   * none.
   */
  payloads(bytes: number): Uint8Array {
    if (!this.payloadBuffer || this.payloadBuffer.length < bytes) this.payloadBuffer = new Uint8Array(bytes);
    return this.payloadBuffer;
  }

  give(buffer: Uint8Array): void {
    if (buffer.length >= BATCH_BUFFER_POOLED_BYTES_MIN && this.free.length < this.keepMax) this.free.push(buffer);
  }

  /** Idle: drop the batch buffers. The payload buffer stays (its pages are only those reads touched). */
  trim(): void {
    this.free.length = 0;
  }

  /** Stopped: drop everything. */
  clear(): void {
    this.free.length = 0;
    this.payloadBuffer = undefined;
  }
}
