// The drain meter's round trip (what the brownout flush keeps back for the handoff record): the latency of a
// batch's acknowledgement less the wire time of what was in flight ahead of it, the least of recent batches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DrainMeter } from '../../agent/replication/index.ts';

test('the round trip is the ack latency less the bytes ahead at the measured rate, the least of recent batches', () => {
  const meter = new DrainMeter();
  meter.roundTrip(500, 1000);
  assert.equal(meter.roundTripMs(), undefined, 'no rate yet: nothing to take the wire time off with');
  meter.sent(0);
  meter.acked(10_000, 1000, true);
  assert.equal(meter.bytesPerS(), 10_000);
  // 2,000 bytes ahead at 10 kB/s are 200 ms on the wire: the rest of 300 ms is the round trip.
  meter.roundTrip(300, 2000);
  assert.equal(meter.roundTripMs(), 100);
  // A batch that also waited behind a modem queue reads longer; the least stays.
  meter.roundTrip(900, 2000);
  assert.equal(meter.roundTripMs(), 100);
  // A latency shorter than the wire time (the rate was under-estimated) counts as no round trip, not a negative one.
  meter.roundTrip(100, 5000);
  assert.equal(meter.roundTripMs(), 0);
  // The least of the last 32: old samples leave.
  for (let index = 0; index < 32; index++) meter.roundTrip(250, 1000);
  assert.equal(meter.roundTripMs(), 150);
});

test('the delivery rate reads the link behind a long round trip, where the busy-time rate reads low', () => {
  // A 200 kB/s link, 100 ms round trip: A, B and C (10 kB each) go at 0 ms, D when A's PUBACK comes.
  const meter = new DrainMeter();
  assert.equal(meter.deliveryBytesPerS(), undefined);
  meter.sent(0);
  const [a, b, c] = [meter.mark(0, false), meter.mark(0, true), meter.mark(0, true)];
  meter.delivered(10_000, 150, 0, a);
  meter.acked(10_000, 150, false);
  const d = meter.mark(150, true);
  assert.deepEqual(d, { delivered: 10_000, fromMs: 150, sentFromMs: 0 }, 'sent with others in flight: counted from the last acknowledgement');
  meter.delivered(10_000, 200, 0, b);
  meter.acked(10_000, 200, false);
  meter.delivered(10_000, 250, 0, c);
  meter.acked(10_000, 250, false);
  // D's bytes crossed from 150 to 200 ms, behind C's: from A's acknowledgement to its own, 30 kB in 150 ms.
  meter.delivered(10_000, 300, 150, d);
  meter.acked(10_000, 300, true);
  assert.equal(meter.deliveryBytesPerS(), 200_000);
  assert.equal(Math.round(meter.bytesPerS()!), 133_333, 'the busy time counts the first round trip');
  // The largest of the last 32 samples: a slower link shows once the fast samples have left.
  for (let index = 0; index < 32; index++) meter.delivered(1000, 1000 + index * 20, 1000 + index * 20 - 10, meter.mark(1000 + index * 20 - 10, false));
  assert.equal(meter.deliveryBytesPerS(), 100_000);
});

test('acknowledgements that come back bunched do not read as a fast link: the sends\' time bounds the sample', () => {
  // A, B and C (10 kB each) go at 0, 100 and 200 ms; a broker that held its PUBACKs answers all three at 300.
  const meter = new DrainMeter();
  const a = meter.mark(0, false);
  const b = meter.mark(100, true);
  const c = meter.mark(200, true);
  meter.delivered(10_000, 300, 0, a);
  meter.delivered(10_000, 300, 100, b);
  meter.delivered(10_000, 300, 200, c);
  // D goes at 301 and is answered at 302: 10 kB acknowledged 2 ms after the last acknowledgement, but the bytes
  // since the last acknowledged send (C's, at 200 ms) took 101 ms to send.
  const d = meter.mark(301, true);
  meter.delivered(10_000, 302, 301, d);
  assert.ok(meter.deliveryBytesPerS()! <= 100_000, `${meter.deliveryBytesPerS()} B/s, not the 5 MB/s of 10 kB in 2 ms`);
});
