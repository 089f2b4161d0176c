/**
 * Freshness of control messages (acks, state heartbeats, leader and handoff records). A signature proves
 * who wrote a message, not when: a recorded ack with `want` or a heartbeat of a primary now dead would
 * verify forever. So every control message carries a `counter` that its sender never uses twice, across
 * restarts too, and receivers drop what is not newer than what they saw.
 *
 * Sender (CounterSource): counters are handed out from a block reserved on flash before any of it is
 * used. The file holds the highest counter reserved; it is rewritten (writeFileAtomic: fsynced, renamed)
 * with the next block before the current one runs out. After a crash a node starts past everything it
 * reserved, so at worst it skips counters, never repeats one. A node whose data directory was wiped (a
 * reflashed gateway keeping its name and key) has no reservation; it starts at its wall clock in
 * microseconds instead (no node sends a million control messages a second), which is above what it used
 * before if its clock is right. If it is not, its siblings drop its control messages as replays until
 * they restart.
 *
 * Receiver (FreshnessFilter), per sender and per track (ack, state, will, leader: each topic is ordered on
 * its own, so one track cannot outrun another): a message is fresh if its counter is above the highest
 * seen and its epoch not below the highest seen. Otherwise it is dropped and counted: `duplicate` (a
 * counter seen moments ago: the same message through another broker, a retained record sent again on
 * resubscribe), `replayed` (an older counter), `stale-epoch`.
 *
 * The rule after a receiver restart: the filter is in memory only, so the first message of each sender
 * and track is accepted (a retained leader record must be read again by a node that restarts). What an
 * old but validly signed record may then cause is for the takeover logic's durable epoch floor to judge;
 * a replay can be accepted at most once per restart of the receiver.
 *
 * The MQTT Will is the one message composed long before it is sent (at connect): its counter is below the
 * heartbeats that follow it, so a state message that says `offline` is its own track (`will`).
 */
import { readFile } from 'node:fs/promises';
import { LastgaspError, writeFileAtomic } from '../util/index.ts';

/**
 * Counters reserved per write. A standby acks every batch it applies (hundreds a second at full speed): a
 * block of 65,536 costs one atomic write (two fsyncs) every few minutes at that rate, and a restart skips
 * at most one block; 2^53 lasts for 10^11 restarts.
 */
export const COUNTER_BLOCK = 65_536;
/** The wall-clock floor's scale: counters per millisecond. 2^53 / 1000 ms is about the year 2255. */
const COUNTER_PER_MS = 1000;
/** A new block is reserved when less than half of the current one is left, so that senders rarely wait. */
const COUNTER_REFILL_BELOW = COUNTER_BLOCK / 2;
/** Senders remembered (signed groups have a handful; this bounds an unsigned group flooded with names). */
const SENDERS_MAX = 1024;
/** Counters remembered per track to tell a duplicate from a replay (a window of copies via other brokers). */
const RECENT_MAX = 16;

export class CounterSource {
  private next = 1;
  private reservedTo = 0;
  private reserving: Promise<void> | undefined;
  private opened = false;

  /** `nowMs`: the wall clock, the floor for a node without a reservation (see above). */
  constructor(
    private readonly file: string,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** Read the last reservation and reserve the first block of this run. */
  async open(): Promise<void> {
    if (this.opened) return;
    const reserved = await readReservation(this.file);
    this.reservedTo = reserved;
    this.next = Math.max(reserved + 1, Math.floor(this.nowMs()) * COUNTER_PER_MS);
    await this.reserve();
    this.opened = true;
  }

  /** A counter never used before by this node. */
  async take(): Promise<number> {
    while (this.next > this.reservedTo) await this.reserve();
    const counter = this.next++;
    if (this.reservedTo - this.next < COUNTER_REFILL_BELOW && !this.reserving) void this.reserve().catch(() => undefined);
    return counter;
  }

  /** A counter now, or undefined when the current block is used up and the next is still being written. */
  takeNow(): number | undefined {
    if (!this.opened || this.next > this.reservedTo) return undefined;
    return this.next++;
  }

  private reserve(): Promise<void> {
    this.reserving ??= (async () => {
      const target = Math.max(this.reservedTo, this.next - 1) + COUNTER_BLOCK;
      await writeFileAtomic(this.file, new TextEncoder().encode(JSON.stringify({ reservedTo: target }) + '\n'));
      this.reservedTo = target;
    })().finally(() => {
      this.reserving = undefined;
    });
    return this.reserving;
  }
}

async function readReservation(file: string): Promise<number> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new LastgaspError('LOG_IO', `cannot read the message counter reservation ${file} (${(error as Error).message})`, { file });
  }
  let reservedTo: unknown;
  try {
    reservedTo = (JSON.parse(text) as { reservedTo?: unknown }).reservedTo;
  } catch {
    reservedTo = undefined;
  }
  if (typeof reservedTo !== 'number' || !Number.isSafeInteger(reservedTo) || reservedTo < 0) {
    // Written atomically, so this is damage from outside; starting anywhere else could repeat counters.
    throw new LastgaspError('LOG_CORRUPT', `${file} does not hold a counter reservation ({"reservedTo": N}); if it was damaged, write one above any counter this node used (e.g. {"reservedTo": 9007199254740000} is always safe) and restart`, { file });
  }
  return reservedTo;
}

export type FreshnessVerdict = 'fresh' | 'duplicate' | 'replayed' | 'stale-epoch';
export type FreshnessTrack = 'ack' | 'state' | 'will' | 'leader';

interface Seen {
  counter: number;
  epoch: number;
  readonly recent: number[];
}

export class FreshnessFilter {
  private readonly seen = new Map<string, Seen>();

  check(sender: string, track: FreshnessTrack, epoch: number, counter: number): FreshnessVerdict {
    const key = `${track}/${sender}`;
    const last = this.seen.get(key);
    if (!last) {
      if (this.seen.size >= SENDERS_MAX) this.seen.delete(this.seen.keys().next().value!);
      this.seen.set(key, { counter, epoch, recent: [counter] });
      return 'fresh';
    }
    if (counter <= last.counter) return last.recent.includes(counter) ? 'duplicate' : 'replayed';
    if (epoch < last.epoch) return 'stale-epoch';
    last.counter = counter;
    last.epoch = epoch;
    last.recent.push(counter);
    if (last.recent.length > RECENT_MAX) last.recent.shift();
    return 'fresh';
  }
}
