// Retransmission and duplicate suppression (PROTOCOL.md §8) between two real endpoints joined back to back.
// The line between them loses or repeats chosen frames: that fault cannot be produced on demand by a pty, so
// the pipe is in-process; the endpoints are the ones the agent and the simulator use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BridgeEndpoint, type BridgeFrame } from '../../firmware-bridge/index.ts';

/** Two endpoints whose writes go to each other, through `deliver`, which may drop or duplicate. */
function pair(deliver: (bytes: Uint8Array, send: (bytes: Uint8Array) => void, index: number) => void) {
  const hostFrames: BridgeFrame[] = [];
  const deviceFrames: BridgeFrame[] = [];
  let hostWrites = 0;
  let device: BridgeEndpoint | undefined;
  const host = new BridgeEndpoint(
    { ackTimeoutMs: 20, write: (bytes) => (deliver(bytes, (b) => queueMicrotask(() => device!.receive(b)), hostWrites++), true) },
    { message: (frame) => hostFrames.push(frame) },
  );
  device = new BridgeEndpoint(
    { ackTimeoutMs: 20, write: (bytes) => (queueMicrotask(() => host.receive(bytes)), true) },
    {
      message: (frame) => {
        deviceFrames.push(frame);
        device!.ack(frame);
      },
    },
  );
  return { host, device, hostFrames, deviceFrames };
}

test('a command whose first copy is lost is retransmitted with the same seq and acknowledged', async () => {
  const link = pair((bytes, send, index) => index === 0 || send(bytes));
  const result = await link.host.sendReliable({ type: 'cut', delayMs: 500 });
  assert.equal(result.ok, true);
  assert.equal(link.deviceFrames.length, 1);
  assert.equal(link.host.counters.get('tx.retransmits'), 1);
});

test('a retransmitted command is answered again but acted on once', async () => {
  const link = pair((bytes, send) => {
    send(bytes);
    send(bytes);
  });
  const result = await link.host.sendReliable({ type: 'hold', durationMs: 1000 });
  assert.equal(result.ok, true);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(link.deviceFrames.length, 1, 'the device acted once');
  assert.equal(link.device.counters.get('rx.duplicates'), 1);
  assert.equal(link.host.counters.get('rx.unmatched-replies'), 1, 'the second ACK found nothing pending');
});

test('a command nobody answers fails with timeout after the configured attempts', async () => {
  const link = pair(() => undefined);
  const result = await link.host.sendReliable({ type: 'cancel' });
  assert.deepEqual(result, { ok: false, reason: 'timeout' });
  assert.equal(link.host.counters.get('tx.retransmits'), 3, 'four attempts in all');
  assert.equal(link.host.counters.get('tx.timeouts'), 1);
});

test('pending commands fail with link-down when the link resets', async () => {
  const link = pair(() => undefined);
  const pending = link.host.sendReliable({ type: 'cut', delayMs: 1 });
  link.host.reset('link-down');
  assert.deepEqual(await pending, { ok: false, reason: 'link-down' });
  assert.equal(link.host.inflight, 0);
});

test('at most four reliable frames are in flight; the fifth is refused as busy', async () => {
  const link = pair(() => undefined);
  const pending = [1, 2, 3, 4].map((delayMs) => link.host.sendReliable({ type: 'cut', delayMs }));
  assert.deepEqual(await link.host.sendReliable({ type: 'cancel' }), { ok: false, reason: 'busy' });
  link.host.reset();
  await Promise.all(pending);
});
