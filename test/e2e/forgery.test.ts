// Issue 8, "what was seen" 4 and 5, on real agent processes signed as shipped (per-node Ed25519 keys) and a
// real mosquitto: forged leader, handoff, batch and ack records from a client without keys, and records a
// member signs in another member's name, are dropped and counted and move nothing (role, epoch,
// watermarks, the sibling's log); a signed ack that claims seqs the primary never committed moves no
// watermark; a recorded signed ack with `want`, replayed 15 times, makes the primary resend nothing, and
// the same `want` sent 15 times with fresh counters is answered once.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { WireCodec, topics } from '../../agent/replication/index.ts';
import { encodeCbor } from '../../agent/util/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { groupKeys } from '../support/keys.ts';
import { settledState, startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

interface Seen {
  role: string;
  epoch: number;
  committed: number;
  replicated: number;
  rejected: Record<string, number>;
  publisher: { rewinds: number; wantsRefused: number; wantsInFlight: number; entriesPublished: number; acksBeyondCommitted: number };
}

async function seen(agent: AgentProcess): Promise<Seen> {
  const status = await agent.client.status();
  const replication = status.replication as { rejected: Record<string, number>; publisher: Seen['publisher'] };
  const marks = status.watermarks as { committed: number; replicated: number };
  return { role: status.role as string, epoch: status.epoch as number, committed: marks.committed, replicated: marks.replicated, rejected: replication.rejected, publisher: replication.publisher };
}

const total = (counts: Record<string, number>, reason: string) => counts[reason] ?? 0;

test('forgeries without keys and in another member\'s name move nothing; a signed ack beyond committed moves no watermark', async () => {
  const dir = await tempDir('forgery');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'forged', broker.url);
  const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', protocolVersion: 5 });
  try {
    for (let index = 0; index < 30; index++) await a.client.put(`k${index}`, `v${index}`);
    await waitFor('the sibling to catch up', async () => ((await seen(b)).committed >= 30 && (await seen(a)).replicated >= 30 ? true : undefined));
    const before = { a: await seen(a), b: await seen(b) };
    const t = topics('lastgasp', 'forged');
    const keys = groupKeys(dir.path);
    const unsigned = new WireCodec();
    const asB = new WireCodec(keys.auth('gw-b', ['gw-a']));
    const now = Date.now();
    const forgedEntry = [{ seq: 31, epoch: before.a.epoch, timestampMs: now, payload: encodeCbor([2, 'k0', new TextEncoder().encode('forged')]) }];
    const publish = (topic: string, payload: Uint8Array, retain = false) => attacker.publishAsync(topic, Buffer.from(payload), { qos: 1, retain });
    // Without keys: a new leader, the largest epoch the log can hold, a handoff, a batch, a far-ahead ack.
    await publish(t.leader, unsigned.encodeLeader({ group: 'forged', kind: 'leader', epoch: 99, counter: 1, node: 'mallory', since: 1, atMs: now }));
    await publish(t.leader, unsigned.encodeLeader({ group: 'forged', kind: 'leader', epoch: 4_294_967_295, counter: 2, node: 'gw-b', since: 1, atMs: now }));
    await publish(t.leader, unsigned.encodeLeader({ group: 'forged', kind: 'handoff', epoch: before.a.epoch, counter: 3, node: 'gw-a', to: 'gw-b', lastSeq: 30, committed: 30, complete: true, atMs: now }));
    await publish(t.log('gw-a'), unsigned.encodeBatch({ group: 'forged', node: 'gw-a', epoch: before.a.epoch, entries: forgedEntry }));
    await publish(t.ack('gw-b'), unsigned.encodeAck({ group: 'forged', node: 'gw-b', epoch: before.b.epoch, counter: 4, seq: 1_000_000_000, atMs: now }));
    // gw-b's key, speaking for gw-a: a handoff and a batch in gw-a's name.
    await publish(t.leader, asB.encodeLeader({ group: 'forged', kind: 'handoff', epoch: before.a.epoch, counter: 2 ** 40, node: 'gw-a', to: 'gw-b', lastSeq: 30, committed: 30, complete: true, atMs: now }));
    await publish(t.log('gw-a'), asB.encodeBatch({ group: 'forged', node: 'gw-a', epoch: before.a.epoch, entries: forgedEntry }));
    const rejectedB = await waitFor('gw-b to count the forgeries it receives', async () => {
      const counts = (await seen(b)).rejected;
      return total(counts, 'unsigned') >= 5 && total(counts, 'signer-mismatch') >= 2 ? counts : undefined;
    });
    assert.equal(total(rejectedB, 'unsigned'), 5, 'leader x2, handoff, batch, ack: each unsigned');
    assert.equal(total(rejectedB, 'signer-mismatch'), 2);
    await waitFor('gw-a to count the forgeries it receives', async () => (total((await seen(a)).rejected, 'unsigned') >= 4 && total((await seen(a)).rejected, 'signer-mismatch') >= 1 ? true : undefined));


    const after = { a: await seen(a), b: await seen(b) };
    assert.equal(after.a.role, 'primary');
    assert.equal(after.b.role, 'standby');
    assert.equal(after.a.epoch, before.a.epoch, 'no epoch moved');
    assert.equal(after.b.epoch, before.b.epoch);
    assert.equal(after.b.committed, 30, 'the forged batch was not stored');
    assert.equal(after.a.committed, 30);
    assert.equal(after.a.replicated, 30, 'no forged ack moved the replicated watermark');
    assert.deepEqual((await b.client.entries(30, 5)).entries.map((entry) => entry.seq), [30]);

    // The group goes on: the real seq 31 is stored, not refused as a duplicate of the forgery.
    for (let index = 30; index < 40; index++) await a.client.put(`k${index}`, `v${index}`);
    await waitFor('replication to go on', async () => ((await seen(b)).committed >= 40 && (await seen(a)).replicated >= 40 ? true : undefined));
    assert.equal((await settledState(b, 40)).digest, (await a.client.list()).digest);
    assert.equal(new TextDecoder().decode((await b.client.get('k0'))!), 'v0');

    // Last (its counter is above gw-b's own, whose later acks it would shadow): a signed ack, with gw-b's
    // own key (a buggy or compromised sibling), for a billion seqs. The primary drops it.
    await publish(t.ack('gw-b'), asB.encodeAck({ group: 'forged', node: 'gw-b', epoch: before.b.epoch, counter: 2 ** 52, seq: 1_000_000_000, atMs: Date.now() }));
    await waitFor('the primary to drop the ack beyond its log', async () => ((await seen(a)).publisher.acksBeyondCommitted === 1 ? true : undefined));
    const last = await seen(a);
    assert.equal(last.replicated, 40, 'the signed ack beyond the log moved no watermark');
    assert.equal(((await a.client.status()).replication.publisher as { siblings: Record<string, number> }).siblings['gw-b'], 40);
  } finally {
    await attacker.endAsync();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a signed ack with want, replayed 15 times, makes no resend; the same want with fresh counters is answered once', async () => {
  const dir = await tempDir('replay-ack');
  const broker = await startMosquitto(dir.path);
  const watcher = await mqtt.connectAsync(broker.url, { clientId: 'recorder', protocolVersion: 5 });
  const t = topics('lastgasp', 'replay');
  const recorded: Uint8Array[] = [];
  watcher.on('message', (_topic, payload) => recorded.push(new Uint8Array(payload)));
  await watcher.subscribeAsync(t.ack('gw-b'), { qos: 1 });
  const { a, b } = await startPair(dir.path, 'replay', broker.url);
  try {
    for (let index = 0; index < 300; index++) await a.client.put(`k${index % 30}`, `v${index}`);
    await waitFor('the sibling to catch up', async () => ((await seen(a)).replicated >= 300 ? true : undefined));
    // A starting standby asks for everything after its position: its first ack carries `want`.
    const reader = new WireCodec(groupKeys(dir.path).auth('gw-a', ['gw-b']));
    const withWant = recorded.find((payload) => {
      const decoded = reader.decode(payload);
      return decoded.ok && decoded.kind === 'ack' && decoded.message.want !== undefined;
    });
    assert.ok(withWant, 'recorded a signed ack with want');
    const before = await seen(a);
    for (let round = 0; round < 15; round++) await watcher.publishAsync(t.ack('gw-b'), Buffer.from(withWant), { qos: 1 });
    await waitFor('the primary to drop the 15 replays', async () => {
      const counts = (await seen(a)).rejected;
      const duplicates = ((await a.client.status()).replication as { duplicates: number }).duplicates;
      return total(counts, 'replayed') + duplicates >= 15 ? true : undefined;
    });
    const afterReplay = await seen(a);
    assert.equal(afterReplay.publisher.rewinds, before.publisher.rewinds, 'no resend for a replayed ack');
    assert.equal(afterReplay.publisher.entriesPublished, before.publisher.entriesPublished);

    // gw-b's key sending the same want 15 times, each with a fresh counter: answered once, the rest refused.
    const asB = new WireCodec(groupKeys(dir.path).auth('gw-b', ['gw-a']));
    const marks = await seen(b);
    for (let round = 0; round < 15; round++) {
      const ack = asB.encodeAck({ group: 'replay', node: 'gw-b', epoch: marks.epoch, counter: 2 ** 52 + round, seq: marks.committed, want: 1, atMs: Date.now() });
      await watcher.publishAsync(t.ack('gw-b'), Buffer.from(ack), { qos: 1 });
    }
    const counters = await waitFor('the 15 fresh wants to be answered or refused', async () => {
      const publisher = (await seen(a)).publisher;
      return publisher.rewinds - before.publisher.rewinds + publisher.wantsRefused + publisher.wantsInFlight - before.publisher.wantsInFlight >= 15 ? publisher : undefined;
    });
    assert.equal(counters.rewinds - before.publisher.rewinds, 1, 'one resend for 15 identical wants');
    // The rest are refused by the once-per-position rule, or seen as crossing the resend just sent.
    assert.equal(counters.wantsRefused + counters.wantsInFlight - before.publisher.wantsInFlight, 14);
    assert.ok(counters.entriesPublished - before.publisher.entriesPublished <= 300, 'the log was sent again at most once');
  } finally {
    await watcher.endAsync();
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a group configured with insecureUnsigned runs unsigned, and every start says so in the log', async () => {
  const dir = await tempDir('unsigned');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'open', broker.url, { extra: { replication: { insecureUnsigned: true } } });
  try {
    for (const agent of [a, b]) {
      const warning = await agent.waitForEvent('unsigned');
      assert.equal(warning.level, 'warn');
      assert.match(String(warning.msg), /not signed.*lastgasp keys generate/);
      assert.equal(((await agent.client.status()).replication as { auth: string }).auth, 'unsigned');
    }
    const { seq } = await a.client.put('k', 'v');
    await waitFor('the unsigned group to replicate', async () => ((await seen(a)).replicated >= seq ? true : undefined));
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
