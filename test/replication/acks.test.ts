// Acks at the primary, on a real mosquitto with signed nodes: an ack moves the watermarks only when it
// comes from a configured sibling, of this epoch or an older one, for seqs this primary committed; and the
// same resend request from one sibling is answered once, then refused until a back-off passed (the
// primary's monotonic clock is skewed forward by the test to cross the back-off without sleeping).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { WireCodec, topics } from '../../agent/replication/index.ts';
import { systemClock, type Clock } from '../../agent/util/index.ts';
import { groupKeys } from '../support/keys.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { GROUP, startNode, waitReplicated } from './support/nodes.ts';

after(killAll);

const MEMBERS = ['gw-a', 'gw-b', 'gw-c'];

test('the primary drops acks from a non-sibling, from a newer epoch and beyond its log, and answers a repeated want once per back-off', async () => {
  const dir = await tempDir('acks');
  const broker = await startMosquitto(dir.path);
  const keys = groupKeys(dir.path);
  let skewMs = 0;
  const skewed: Clock = { ...systemClock, monotonicMs: () => systemClock.monotonicMs() + skewMs };
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: [broker.url], siblings: ['gw-b'], auth: keys.auth('gw-a', MEMBERS), clock: skewed });
  const b = await startNode({ dir: dir.path, name: 'gw-b', role: 'standby', brokers: [broker.url], siblings: ['gw-a'], auth: keys.auth('gw-b', MEMBERS) });
  const client = await mqtt.connectAsync(broker.url, { clientId: 'member-tools', protocolVersion: 5 });
  const t = topics('lastgasp', GROUP);
  const send = (payload: Uint8Array, node = 'gw-b') => client.publishAsync(t.ack(node), Buffer.from(payload), { qos: 1 });
  const publisher = () => a.publisher() as unknown as { rewinds: number; entriesPublished: number; wantsRefused: number; acksFromStrangers: number; acksFromNewerEpoch: number; acksBeyondCommitted: number; siblings: Record<string, number> };
  try {
    await a.append(50, 'ack');
    await waitReplicated(a, 50);
    const asB = new WireCodec(keys.auth('gw-b', MEMBERS));
    const asC = new WireCodec(keys.auth('gw-c', MEMBERS));
    // gw-c is a member (its key is listed) but not a sibling of gw-a: its ack counts for nothing.
    await send(asC.encodeAck({ group: GROUP, node: 'gw-c', epoch: a.log.epoch, counter: 1, seq: 50, atMs: Date.now() }), 'gw-c');
    await waitFor('the stranger\'s ack to be counted', () => (publisher().acksFromStrangers === 1 ? true : undefined));
    // gw-b's key, counters above its own from here on (its later acks are shadowed; the test ends with them).
    let counter = 2 ** 52;
    const ack = (fields: { epoch?: number; seq?: number; want?: number }) =>
      asB.encodeAck({ group: GROUP, node: 'gw-b', epoch: fields.epoch ?? a.log.epoch, counter: counter++, seq: fields.seq ?? 50, ...(fields.want !== undefined ? { want: fields.want } : {}), atMs: Date.now() });
    await send(ack({ seq: 51 }));
    await send(ack({ seq: 50, want: 52 }));
    await waitFor('the acks beyond the log to be dropped', () => (publisher().acksBeyondCommitted === 2 ? true : undefined));
    assert.equal(a.log.watermarks().replicated, 50);
    assert.equal(publisher().siblings['gw-b'], 50);

    const rewinds = publisher().rewinds;
    // The entries were published moments ago: past the grace for a request that crosses its batch first.
    skewMs += 1500;
    // Read before the request goes out: the resend can be over before the request's own PUBACK comes back.
    const published = publisher().entriesPublished;
    await send(ack({ want: 10 }));
    await waitFor('the first want to be answered', () => (publisher().rewinds === rewinds + 1 ? true : undefined));
    await waitFor('seqs 10..50 to be sent again', () => (publisher().entriesPublished >= published + 41 ? true : undefined));
    // 1.5 s later (past the 1 s grace for a request crossing its resend, inside the 2 s back-off): refused.
    skewMs += 1500;
    await send(ack({ want: 10 }));
    await waitFor('the repeated want to be refused', () => (publisher().wantsRefused === 1 ? true : undefined));
    assert.equal(publisher().rewinds, rewinds + 1);
    // Past the back-off: answered again; the next back-off is twice as long.
    skewMs += 1000;
    await send(ack({ want: 10 }));
    await waitFor('the want to be answered after the back-off', () => (publisher().rewinds === rewinds + 2 ? true : undefined));
    await waitFor('seqs 10..50 to be sent again', () => (publisher().entriesPublished >= published + 82 ? true : undefined));
    skewMs += 3000;
    await send(ack({ want: 10 }));
    await waitFor('the want to be refused within the doubled back-off', () => (publisher().wantsRefused === 2 ? true : undefined));
    // Another position is another request.
    await send(ack({ want: 20 }));
    await waitFor('a want at another position to be answered', () => (publisher().rewinds === rewinds + 3 ? true : undefined));
    // Last, as receivers then hold gw-b's acks to that epoch: an ack from a sibling that follows a newer leader.
    await send(ack({ epoch: a.log.epoch + 1, seq: 50 }));
    await waitFor('the ack of a newer epoch to be dropped', () => (publisher().acksFromNewerEpoch === 1 ? true : undefined));
    await send(ack({ seq: 50 }));
    await waitFor('an ack of the older epoch after it to be refused as stale', () => ((a.rejected()['stale-epoch'] ?? 0) === 1 ? true : undefined));
    assert.equal(a.log.watermarks().replicated, 50);
  } finally {
    await client.endAsync();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
