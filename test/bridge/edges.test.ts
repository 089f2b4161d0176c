// Events are edges: each condition is reported once, whichever path (a pushed event or a status) brings it
// first, and a status after a link outage recovers an edge the outage swallowed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEdges, type PowerEvent, type PowerStatus } from '../../firmware-bridge/index.ts';

const status = (fields: Partial<PowerStatus>): PowerStatus => ({ source: 't', acPresent: true, alarms: [], atMs: 1, ...fields });

test('a pushed event followed by the status that shows it gives one event', () => {
  const events: PowerEvent[] = [];
  const edges = new EventEdges((event) => events.push(event));
  edges.status(status({ acPresent: true }));
  edges.pushed('ac-lost', 2);
  edges.status(status({ acPresent: false }));
  assert.deepEqual(events.map((event) => event.kind), ['ac-lost']);
});

test('a status on mains at start is the starting point, not a restoration; then loss and return are edges', () => {
  const events: PowerEvent[] = [];
  const edges = new EventEdges((event) => events.push(event));
  edges.status(status({ acPresent: true }));
  edges.status(status({ acPresent: false, lowBattery: true }));
  edges.status(status({ acPresent: false, lowBattery: true }));
  edges.status(status({ acPresent: true, lowBattery: false }));
  assert.deepEqual(events.map((event) => event.kind), ['ac-lost', 'low-battery', 'ac-restored']);
  assert.ok(events.every((event) => event.detail === 'derived from status'));
});

test('starting on battery reports ac-lost at once', () => {
  const events: PowerEvent[] = [];
  new EventEdges((event) => events.push(event)).status(status({ acPresent: false }));
  assert.deepEqual(events.map((event) => event.kind), ['ac-lost']);
});

test('a retransmitted or repeated pushed event is not reported twice; brownout and power-off-pending are edges too', () => {
  const events: PowerEvent[] = [];
  const edges = new EventEdges((event) => events.push(event));
  edges.pushed('ac-lost', 1);
  edges.pushed('ac-lost', 2);
  edges.pushed('brownout', 3);
  edges.status(status({ acPresent: false }), true, true);
  edges.pushed('ac-restored', 4);
  edges.pushed('ac-lost', 5);
  assert.deepEqual(events.map((event) => event.kind), ['ac-lost', 'brownout', 'power-off-pending', 'ac-restored', 'ac-lost']);
});
