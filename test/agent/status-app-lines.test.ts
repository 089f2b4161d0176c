// `lastgasp status` shows the application, the MQTT listener and the upstream forwarding when they are
// configured, and flags a crash loop and a forwarder that is not connected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appLines } from '../../agent/cli/status.ts';

test('nothing configured: no lines', () => {
  assert.deepEqual(appLines({ node: 'gw-a' }), []);
});

test('a running application, the listener and a connected forwarder, one line each', () => {
  const lines = appLines({
    app: { state: 'running', pid: 4242, crashLoop: false, backoffMs: 0, starts: 2, exits: 1, restarts: 1, lastExit: { code: 1, signal: null, ranMs: 40_000 } },
    mqttIngest: { mqttJournaled: 120, mqttPassedThrough: 4, mqttRefused: 0, mqttAuthFailures: 1 },
    forward: { running: true, connected: true, lastAcked: 118, marked: 100, inFlight: 2, forwarded: 118, forwardDuplicates: 0, forwardExpired: 0, forwardReconnects: 0, forwardGaps: 0 },
  });
  assert.deepEqual(lines, [
    '  app: running (pid 4242), 2 starts, 1 exits, 1 restarts, last exit code 1 after 40000 ms',
    '  mqtt ingest: 120 journaled, 4 relayed only, 0 refused, 1 bad passwords',
    '  forward upstream: connected, PUBACKed to seq 118 (recorded 100), 2 in flight, 118 forwarded, 0 marked duplicate, 0 expired, 0 reconnects',
  ]);
});

test('a crash loop and a forwarder without its broker are flagged', () => {
  const [app, forward] = appLines({
    app: { state: 'backoff', crashLoop: true, backoffMs: 8000, starts: 4, exits: 4, restarts: 3, lastExit: { code: null, signal: 'SIGSEGV', ranMs: 120 } },
    forward: { running: true, connected: false, lastAcked: 0, marked: 0, inFlight: 0, forwarded: 0, forwardDuplicates: 0, forwardExpired: 0, forwardReconnects: 5, forwardGaps: 0 },
  });
  assert.equal(app, '  app: backoff, 4 starts, 4 exits, 3 restarts, last exit SIGSEGV after 120 ms  CRASH LOOP: restarting in 8000 ms');
  assert.match(forward!, /forward upstream: NOT CONNECTED, .* 5 reconnects$/);
});
