/**
 * The drain rate of this link, measured from the replication traffic itself: bytes acknowledged (at the
 * configured level's first step, the broker quorum) per millisecond that the publisher had something in
 * flight. Idle time is not counted, so a link that is fast but rarely used is not mistaken for a slow one.
 *
 * The estimate is byte-weighted over the most recent busy time (Σ bytes ÷ Σ busy ms over a window), not an
 * average of per-period rates: a one-entry period on an idle link is bounded by the round trip, not by the
 * bandwidth, and weighting by bytes lets the periods that moved the most data (the ones a long tail looks
 * like) decide. Under-estimating is the safe side: it starts a brownout early; over-estimating would let a
 * tail grow that cannot leave.
 *
 * For sizing batches to the link (publisher.ts) only stretches in which the publisher filled its window count
 * (`saturated()`): then the link, not the round trip of a lone batch, set the pace. An idle link's
 * one-entry exchanges would otherwise shrink the batches of the next backlog to nothing.
 *
 * Both still read low on a link with a long round trip: a full window of small batches is bounded by the
 * round trip too, and a stretch's busy time starts before its first acknowledgement. The brownout flush sizes
 * its batches, the bytes it keeps in flight and the time it keeps back for the handoff record from the rate,
 * so an estimate at a third of the link (measured on a 10 Mbit/s uplink with a 100 ms round trip) used a
 * third of it and stopped early. The publisher therefore also takes each batch's delivery rate, as TCP's
 * BBR does (draft-cheng-iccrg-delivery-rate-estimation): the bytes acknowledged from the last
 * acknowledgement before the batch left to its own, over that time, or over the time those bytes took to be
 * sent if that is longer (acknowledgements that come back bunched would otherwise read as a fast link). A
 * sample can then only read the link's rate or less, so the largest of the recent ones is the link's
 * (`deliveryBytesPerS`). The energy estimate (`bytesPerS`) stays the cautious one.
 */

/** Busy time the estimate looks back over: long enough to smooth a burst, short enough to follow a link that changed. */
export const DRAIN_WINDOW_MS = 10_000;
/** A busy stretch is closed into a sample at this length even while still busy, so a long flush updates the rate. */
export const DRAIN_SAMPLE_MS_MAX = 250;
/** Samples kept: a bound on the ring; at DRAIN_SAMPLE_MS_MAX each, more than the window needs. */
const DRAIN_SAMPLES_MAX = 64;
/**
 * Round-trip samples kept: the least of the last this many batches is the estimate. A batch that waited
 * behind others in flight reads long; the least of a few dozen includes one that went out alone (each
 * brownout flush starts with one), and a link that became slower shows within as many batches.
 */
const ROUND_TRIP_SAMPLES_MAX = 32;

import { RecentMax } from '../util/index.ts';

/** Delivery-rate samples kept: the largest of the last this many batches is the link's rate. */
const DELIVERY_SAMPLES_MAX = 32;
/** A delivery-rate sample over less time than this says more about timer resolution than about the link. */
const DELIVERY_ELAPSED_MS_MIN = 1;

/** What a batch records when it is handed to the link, for its delivery-rate sample (`delivered`). */
export interface DeliveryMark {
  /** Bytes acknowledged in all until then. */
  readonly delivered: number;
  /** Since when the sample counts: the last acknowledgement, or the send itself when nothing was in flight. */
  readonly fromMs: number;
  /** When the batch acknowledged last had been sent (the send itself when nothing was in flight). */
  readonly sentFromMs: number;
}

interface Sample {
  readonly bytes: number;
  readonly busyMs: number;
  /** The window was full at some point of the stretch. */
  readonly saturated: boolean;
}

export class DrainMeter {
  private readonly samples: Sample[] = [];
  private busySinceMs: number | undefined;
  private bytesInPeriod = 0;
  private saturatedInPeriod = false;
  private readonly roundTripsMs: number[] = [];
  private deliveredBytes = 0;
  private lastDeliveryMs: number | undefined;
  private lastDeliveredSentMs = 0;
  private readonly deliveryRates = new RecentMax(DELIVERY_SAMPLES_MAX);

  /** Something was put in flight; starts a busy stretch unless one is running. */
  sent(atMs: number): void {
    this.busySinceMs ??= atMs;
  }

  /** The publisher has as much in flight as it may: this stretch measures the link. */
  saturated(): void {
    if (this.busySinceMs !== undefined) this.saturatedInPeriod = true;
  }

  /** `bytes` were acknowledged at `atMs`; `idle`: nothing is left in flight, the busy stretch ends. */
  acked(bytes: number, atMs: number, idle: boolean): void {
    if (this.busySinceMs === undefined) return;
    this.bytesInPeriod += bytes;
    const busyMs = atMs - this.busySinceMs;
    if (!idle && busyMs < DRAIN_SAMPLE_MS_MAX) return;
    if (busyMs > 0 && this.bytesInPeriod > 0) this.push({ bytes: this.bytesInPeriod, busyMs, saturated: this.saturatedInPeriod });
    this.bytesInPeriod = 0;
    this.saturatedInPeriod = false;
    this.busySinceMs = idle ? undefined : atMs;
  }

  /**
   * A batch is handed to the link at `atMs`, with others already in flight or not: what it records. With
   * nothing in flight the delivery clock starts again here (the link was idle: time before says nothing).
   */
  mark(atMs: number, othersInFlight: boolean): DeliveryMark {
    if (!othersInFlight || this.lastDeliveryMs === undefined) {
      this.lastDeliveryMs = atMs;
      this.lastDeliveredSentMs = atMs;
    }
    return { delivered: this.deliveredBytes, fromMs: this.lastDeliveryMs, sentFromMs: this.lastDeliveredSentMs };
  }

  /**
   * A batch of `bytes`, handed to the link at `sentAtMs` with `mark`, made its quorum at `atMs`: a delivery
   * rate over the longer of the acknowledgements' time and the sends' time (see the file's comment).
   */
  delivered(bytes: number, atMs: number, sentAtMs: number, mark: DeliveryMark): void {
    this.deliveredBytes += bytes;
    this.lastDeliveryMs = atMs;
    this.lastDeliveredSentMs = sentAtMs;
    const elapsedMs = Math.max(atMs - mark.fromMs, sentAtMs - mark.sentFromMs);
    if (elapsedMs < DELIVERY_ELAPSED_MS_MIN) return;
    this.deliveryRates.note(((this.deliveredBytes - mark.delivered) * 1000) / elapsedMs);
  }

  /** The link's rate: the largest delivery rate of the recent batches (see `delivered`); undefined until one. */
  deliveryBytesPerS(): number | undefined {
    return this.deliveryRates.max();
  }

  /**
   * A batch was acknowledged `latencyMs` after it was handed to the link, with `bytesAhead` in flight then
   * (itself included): what is left once their time on the wire at the measured rate is taken off is a
   * round trip. Not counted before the rate is measured. The wire time is taken at the higher of the two
   * rates: at one that reads low it would swallow the round trip.
   */
  roundTrip(latencyMs: number, bytesAhead: number): void {
    const measured = this.bytesPerS();
    const delivery = this.deliveryBytesPerS();
    if (measured === undefined && delivery === undefined) return;
    const rate = Math.max(measured ?? 0, delivery ?? 0);
    this.roundTripsMs.push(Math.max(0, latencyMs - (bytesAhead * 1000) / rate));
    if (this.roundTripsMs.length > ROUND_TRIP_SAMPLES_MAX) this.roundTripsMs.shift();
  }

  /** The link's round trip: the least of the recent batches' (see roundTrip); undefined until measured. */
  roundTripMs(): number | undefined {
    return this.roundTripsMs.length === 0 ? undefined : Math.min(...this.roundTripsMs);
  }

  /** The link stopped under the traffic (a failure, a pause): the stretch says nothing about the rate. */
  reset(): void {
    this.busySinceMs = undefined;
    this.bytesInPeriod = 0;
    this.saturatedInPeriod = false;
  }

  /** Bytes per second over the recent busy time (`saturatedOnly`: stretches with a full window); undefined until measured. */
  bytesPerS(saturatedOnly = false): number | undefined {
    let bytes = 0;
    let busyMs = 0;
    for (let index = this.samples.length - 1; index >= 0 && busyMs < DRAIN_WINDOW_MS; index--) {
      const sample = this.samples[index]!;
      if (saturatedOnly && !sample.saturated) continue;
      bytes += sample.bytes;
      busyMs += sample.busyMs;
    }
    return busyMs > 0 ? (bytes * 1000) / busyMs : undefined;
  }

  private push(sample: Sample): void {
    this.samples.push(sample);
    if (this.samples.length > DRAIN_SAMPLES_MAX) this.samples.shift();
  }
}
