// `lastgasp status` prints a line per broker link and per direct-path peer, and flags what an operator must look at: a stalled link,
// a replicated watermark that stopped moving, an incomplete handoff this node took over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkLines } from '../../agent/cli/status.ts';

const link = { broker: 'mqtt://n1:1883,mqtt://n2:1883', server: 'n2:1883', lastAckAgeMs: 40, oldestUnackedMs: 0, inflight: 3, connects: 3, failovers: 1, causes: [{ server: 'n1:1883', cause: 'connection lost' }] };

test('a healthy link: state, server, last acknowledgement, reconnects and the latest cause; nothing flagged', () => {
  const lines = linkLines({ replication: { links: [{ ...link, state: 'up' }], publisher: { watermarkStalledMs: 0 } } });
  assert.deepEqual(lines, ['  broker mqtt://n1:1883,mqtt://n2:1883: up on n2:1883, last ack 40 ms ago, 3 in flight, 2 reconnects, 1 failovers (last: n1:1883: connection lost)']);
});

test('a stalled link, a frozen watermark and an incomplete handoff are flagged', () => {
  const lines = linkLines({
    replication: { links: [{ ...link, state: 'stalled', oldestUnackedMs: 6100 }], publisher: { watermarkStalledMs: 7000 } },
    lastTakeover: { fromNode: 'gw-a', complete: false, handoffLastSeq: 906, handoffCommitted: 1674 },
  });
  assert.match(lines[0]!, /stalled on n2:1883.*STALLED: a publish unacknowledged for 6100 ms/);
  assert.equal(lines[1], '  STALLED: the replicated watermark has not moved for 7000 ms with entries waiting');
  assert.equal(lines[2], '  INCOMPLETE HANDOFF from gw-a: seqs 907..1674 acknowledged there never arrived here');
});

test('an incomplete handoff whose tail came on behind the record: the gap starts at the new epoch\'s first seq', () => {
  const lines = linkLines({ replication: { links: [] }, lastTakeover: { fromNode: 'gw-a', complete: false, since: 1210, handoffLastSeq: 906, handoffCommitted: 1674 } });
  assert.deepEqual(lines, ['  INCOMPLETE HANDOFF from gw-a: seqs 1210..1674 acknowledged there never arrived here']);
});

test('a link with no connection says so', () => {
  const [line] = linkLines({ replication: { links: [{ ...link, state: 'down', server: '', lastAckAgeMs: -1, causes: [] }] } });
  assert.equal(line, '  broker mqtt://n1:1883,mqtt://n2:1883: down, no connection, 3 in flight, 2 reconnects, 1 failovers');
});

test('a direct-path peer: its state both ways, last ack on the path, batches in flight, reconnects and the latest cause', () => {
  const peer = { node: 'gw-b', address: '10.0.0.2:7884', state: 'up', inboundConnected: true, lastAckAgeMs: 12, inflight: 2, reconnects: 1, causes: [{ atMs: 1, cause: 'closed by the peer' }] };
  const lines = linkLines({ replication: { links: [], direct: { peers: [peer, { ...peer, node: 'gw-c', state: 'down', inboundConnected: false, lastAckAgeMs: -1, inflight: 0, reconnects: 0, causes: [{ atMs: 2, cause: 'ECONNREFUSED' }] }] } } });
  assert.deepEqual(lines, [
    '  peer gw-b (direct, 10.0.0.2:7884): up, connected to this node, last ack 12 ms ago, 2 in flight, 1 reconnects (last: closed by the peer)',
    '  peer gw-c (direct, 10.0.0.2:7884): down, NOT connected to this node, no ack on this path yet, 0 in flight, 0 reconnects (last: ECONNREFUSED)',
  ]);
});
