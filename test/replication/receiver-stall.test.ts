// The standby's stall check: when the primary is ahead and nothing arrives, it asks for a resend — but not
// while no path can deliver anything (every broker link down): the broker queues for its session meanwhile,
// and a resend request then only makes the primary send again what is already queued (the faults test saw
// it as a rewind). The quiet is counted from when a path is back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog } from '../../agent/log/index.ts';
import { Receiver, type AckMessage } from '../../agent/replication/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { FakeClock, settle } from '../support/fake-clock.ts';
import { tempDir } from '../support/ports.ts';

test('no resend request while no path can deliver; one after the stall time once a path is back', async () => {
  const dir = await tempDir('receiver-stall');
  const log = createFlashLog({ dir: dir.path, segmentBytes: 1024 * 1024 });
  await log.open();
  const clock = new FakeClock();
  const acks: AckMessage[] = [];
  let receiving = false;
  const receiver = new Receiver({
    log,
    group: 'g',
    node: 'gw-b',
    sources: 1,
    keepaliveS: 30,
    sendAck: async (ack) => void acks.push(ack),
    receiving: () => receiving,
    logger: silentLogger,
    clock,
  });
  try {
    await receiver.start();
    await settle();
    const atStart = acks.length;
    receiver.notePrimary(500, 1);
    for (let second = 0; second < 30; second++) {
      clock.advance(1000);
      await settle();
    }
    assert.equal(acks.slice(atStart).filter((ack) => ack.want !== undefined).length, 0, 'no resend request while disconnected');
    assert.equal(receiver.stats().stalls, 0);

    receiving = true;
    clock.advance(1000);
    await settle();
    assert.equal(acks.slice(atStart).filter((ack) => ack.want !== undefined).length, 0, 'the quiet counts from when the path came back');
    for (let second = 0; second < 3; second++) {
      clock.advance(1000);
      await settle();
    }
    const wants = acks.slice(atStart).filter((ack) => ack.want !== undefined);
    assert.equal(wants.length, 1, 'connected and still nothing: one resend request');
    assert.equal(wants[0]!.want, 1);
  } finally {
    receiver.stop();
    await log.close();
    await dir.remove();
  }
});
