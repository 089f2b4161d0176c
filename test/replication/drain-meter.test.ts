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
