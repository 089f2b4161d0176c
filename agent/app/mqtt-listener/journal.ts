/**
 * The journaling policy and its group commit. A QoS 1 or 2 message on a topic that matches a `journal`
 * filter becomes a log entry `[4, topic, payload, props?]` (ops.ts); its acknowledgement waits for the
 * entry's fdatasync, or for the copy `ackAfter` asks for (copy-wait.ts).
 *
 * Every message submitted in one turn of the event loop (all the PUBLISHes parsed from every socket read of
 * that turn, across connections) goes to the log in ONE batch append per copy level: one promise, one group
 * commit, one wake-up, whatever the number of clients and their in-flight windows.
 */
import { setImmediate } from 'node:timers';
import { LastgaspError } from '../../util/index.ts';
import type { AckAfter, CopyOptions } from '../copy-wait.ts';
import { OP_MQTT, encodeOp } from '../ops.ts';
import { journalProps, type Message } from './message.ts';
import { topicMatches } from './topics.ts';

/** Entries in one batch append: bounds the memory of a batch (the log bounds its bytes itself). */
const JOURNAL_BATCH_ENTRIES_MAX = 4096;
/** Payload bytes in one batch append, well under what one write of the log holds (log/format.ts, 4 MiB). */
const JOURNAL_BATCH_BYTES_MAX = 1024 * 1024;

export interface JournalOptions {
  /** Topic filters whose QoS 1/2 messages are journaled. */
  journal: readonly string[];
  /** Topic filter → the copy a message waits for before its acknowledgement; the first match wins. */
  ackAfter: Readonly<Record<string, AckAfter>>;
  /** log.entryBytesMax: a message whose entry is larger is refused alone, before it joins a batch. */
  entryBytesMax: number;
  /** The agent's batch append (all or nothing, one group commit). */
  appendMany(payloads: readonly Uint8Array[], copy?: CopyOptions): Promise<unknown>;
}

/** Called once per message: undefined when it is on flash (and copied as asked), else why not. */
export type JournalDone = (error: LastgaspError | undefined) => void;

interface Batch {
  readonly copy: CopyOptions | undefined;
  payloads: Uint8Array[];
  dones: JournalDone[];
  bytes: number;
}

export class Journal {
  private readonly batches = new Map<string, Batch>();
  private scheduled = false;
  private readonly flushBound = (): void => this.flush();
  readonly counters = { mqttJournalBatches: 0 };

  constructor(private readonly options: JournalOptions) {}

  /** Whether a message is journaled: QoS 1 or 2 on a topic a `journal` filter matches. */
  wants(message: Message): boolean {
    return message.qos > 0 && this.options.journal.some((filter) => topicMatches(filter, message.topic));
  }

  /** Queue a message for the next batch; `done` is called once, maybe synchronously (an entry too large). */
  submit(message: Message, done: JournalDone): void {
    const props = journalProps(message);
    const payload = encodeOp(props ? { op: OP_MQTT, topic: message.topic, data: message.payload, props } : { op: OP_MQTT, topic: message.topic, data: message.payload });
    if (payload.length > this.options.entryBytesMax) {
      return done(new LastgaspError('ENTRY_TOO_LARGE', `the MQTT message on ${message.topic} makes an entry of ${payload.length} bytes, over log.entryBytesMax (${this.options.entryBytesMax}); publish smaller messages or raise log.entryBytesMax`, { bytes: payload.length }));
    }
    const copy = this.copyFor(message.topic);
    const key = copy?.ackAfter ?? '';
    let batch = this.batches.get(key);
    if (!batch) {
      batch = { copy, payloads: [], dones: [], bytes: 0 };
      this.batches.set(key, batch);
    }
    batch.payloads.push(payload);
    batch.dones.push(done);
    batch.bytes += payload.length;
    if (batch.payloads.length >= JOURNAL_BATCH_ENTRIES_MAX || batch.bytes >= JOURNAL_BATCH_BYTES_MAX) {
      this.batches.delete(key);
      this.commit(batch.copy, batch.payloads, batch.dones);
    } else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private flush(): void {
    this.scheduled = false;
    for (const batch of this.batches.values()) void this.commit(batch.copy, batch.payloads, batch.dones);
    this.batches.clear();
  }

  /**
   * One batch append. Resolves with the error that held the batch back when the messages after it must not
   * overtake it (a full log, a handoff: their clients send them again, in order), undefined otherwise; a
   * message too large on its own is refused alone, for good, and does not hold back the rest.
   */
  private async commit(copy: CopyOptions | undefined, payloads: Uint8Array[], dones: JournalDone[]): Promise<LastgaspError | undefined> {
    this.counters.mqttJournalBatches++;
    let typed: LastgaspError;
    try {
      await this.options.appendMany(payloads, copy);
      for (const done of dones) done(undefined);
      return undefined;
    } catch (error) {
      typed = error instanceof LastgaspError ? error : new LastgaspError('LOG_FAULT', `the log refused an MQTT batch: ${String(error)}`);
    }
    // A batch over what one write of the log holds (small segments), or over its hard limit on unreplicated
    // bytes: each half on its own, the second once the first is in, so that the log keeps the messages' order.
    if (typed.code === 'ENTRY_TOO_LARGE' && payloads.length > 1) {
      const half = payloads.length >> 1;
      const held = await this.commit(copy, payloads.slice(0, half), dones.slice(0, half));
      if (held) {
        for (const done of dones.slice(half)) done(held);
        return held;
      }
      return this.commit(copy, payloads.slice(half), dones.slice(half));
    }
    for (const done of dones) done(typed);
    return typed.code === 'ENTRY_TOO_LARGE' ? undefined : typed;
  }

  private copyFor(topic: string): CopyOptions | undefined {
    for (const filter in this.options.ackAfter) if (topicMatches(filter, topic)) return { ackAfter: this.options.ackAfter[filter]! };
    return undefined;
  }
}
