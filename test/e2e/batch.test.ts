// Batch appends through the HTTP API of real agent processes, with a real mosquitto and a sibling:
// - the write rules of single writes hold for a batch (a standby refuses it, a bad item or a too-large entry
//   refuses all of it, KV ops in a batch are read back at once, JSON lines work like CBOR); a long poll of
//   the log is answered by the next write;
// - a primary SIGKILLed while batches stream in: every acknowledged batch is on its flash after the restart
//   and on the sibling, each at the seqs it was acknowledged with, and every batch found in the log is
//   there whole (one write per batch), acknowledged or not.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OP_ENTRY, OP_PUT, type Op } from '../../agent/app/index.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { settledState, startAgent, startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const text = new TextEncoder();
const fromText = new TextDecoder();

/** Every entry of the agent's log, as the text of its data (entries) or "put key=value". */
async function logTexts(agent: AgentProcess, upTo: number): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (let from = 1; from <= upTo; ) {
    const page = await agent.client.entries(from, 5000);
    for (const entry of page.entries) {
      if (entry.op === 'entry') out.set(entry.seq, Buffer.from(entry.data as string, 'base64').toString('utf8'));
      else out.set(entry.seq, `${entry.op} ${String(entry.key)}`);
    }
    if (page.entries.length === 0) break;
    from = page.next;
  }
  return out;
}

async function post(agent: AgentProcess, body: string, type: string): Promise<{ status: number; json: Record<string, any> }> {
  const dataDir = (JSON.parse(readFileSync(agent.configFile, 'utf8')) as { dataDir: string }).dataDir;
  const token = readFileSync(join(dataDir, 'api.token'), 'utf8').trim();
  const response = await fetch(`http://${agent.api}/v1/batch`, { method: 'POST', body, headers: { 'content-type': type, authorization: `Bearer ${token}` } });
  return { status: response.status, json: (await response.json()) as Record<string, any> };
}

test('a batch follows the write rules of a single write', async () => {
  const dir = await tempDir('e2e-batch-rules');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'batch', broker.url, { extra: { log: { entryBytesMax: 4096 } } });
  try {
    const ops: Op[] = [
      { op: OP_PUT, key: 'config/mode', value: text.encode('eco') },
      { op: OP_ENTRY, data: text.encode('first reading') },
      { op: OP_PUT, key: 'config/rate', value: text.encode('5') },
    ];
    const result = await a.client.batch(ops);
    assert.deepEqual({ ...result, epoch: 0 }, { firstSeq: result.lastSeq - 2, lastSeq: result.lastSeq, epoch: 0, count: 3 });
    // KV ops are applied before the answer: read your writes.
    assert.equal(fromText.decode(await a.client.get('config/rate')), '5');
    const stored = await a.client.entries(result.firstSeq, 3);
    assert.deepEqual(stored.entries.map((entry) => entry.seq), [result.firstSeq, result.firstSeq + 1, result.firstSeq + 2]);
    assert.equal(stored.entries[1]!.op, 'entry');

    const lines = [JSON.stringify({ op: 'put', key: 'config/mode', text: 'boost' }), JSON.stringify({ op: 'delete', key: 'config/rate' })].join('\n');
    const viaLines = await post(a, lines, 'application/x-ndjson');
    assert.equal(viaLines.status, 201);
    assert.equal(viaLines.json.firstSeq, result.lastSeq + 1);
    assert.equal(fromText.decode(await a.client.get('config/mode')), 'boost');
    assert.equal(await a.client.get('config/rate'), undefined);

    const committed = (await a.client.status()).watermarks.committed as number;
    const badItem = await post(a, `${JSON.stringify({ op: 'entry', text: 'ok' })}\n{"op":"entry","data":"%%"}`, 'application/x-ndjson');
    assert.equal(badItem.status, 400);
    assert.equal(badItem.json.error.index, 1);
    const tooLarge = await a.client.batch([{ op: OP_ENTRY, data: text.encode('small') }, { op: OP_ENTRY, data: new Uint8Array(5000) }]).catch((error: unknown) => error);
    assert.ok(isLastgaspError(tooLarge, 'ENTRY_TOO_LARGE'), String(tooLarge));
    const wrongType = await post(a, 'x', 'application/json');
    assert.equal(wrongType.status, 415);
    assert.equal((await a.client.status()).watermarks.committed, committed, 'refused batches stored nothing');

    // A consumer's long poll: nothing after the end yet, so it waits, and the next write answers it.
    const end = (await a.client.status()).watermarks.committed as number;
    const empty = await a.client.entries(end + 1, 10, 200);
    assert.deepEqual(empty.entries, [], 'a poll with nothing new ends empty after waitMs');
    const poll = a.client.entries(end + 1, 10, 20_000);
    const written = await a.client.batch([{ op: OP_ENTRY, data: text.encode('polled') }]);
    const polled = await poll;
    assert.equal(polled.entries[0]?.seq, written.firstSeq);
    assert.equal(Buffer.from(String(polled.entries[0]!.data), 'base64').toString('utf8'), 'polled');

    const onStandby = await b.client.batch(ops).catch((error: unknown) => error);
    assert.ok(isLastgaspError(onStandby, 'NOT_PRIMARY'), String(onStandby));
    assert.equal((onStandby.detail as { leader?: string }).leader, 'gw-a', 'the refusal names the primary');

    const primary = await settledState(a, written.lastSeq);
    assert.deepEqual(await settledState(b, written.lastSeq), primary, 'the sibling applied the batches to the same state');
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});

test('a primary SIGKILLed while batches stream in: acknowledged batches are all kept, and every batch is stored whole or not at all', async () => {
  const dir = await tempDir('e2e-batch-kill');
  const broker = await startMosquitto(dir.path);
  let { a, b } = await startPair(dir.path, 'batch', broker.url);
  try {
    /** Acknowledged batches: writer/number → the seqs they were given. */
    const acked = new Map<string, { firstSeq: number; size: number }>();
    const sizes = new Map<string, number>();
    let stop = false;
    const writers = Array.from({ length: 8 }, async (_, writer) => {
      for (let number = 0; !stop; number++) {
        const tag = `w${writer}-b${number}`;
        const size = 1 + ((writer * 7 + number * 13) % 120);
        sizes.set(tag, size);
        const ops: Op[] = Array.from({ length: size }, (_, i) => (i % 10 === 9 ? { op: OP_PUT, key: `${tag}/${i}`, value: Uint8Array.of(i) } : { op: OP_ENTRY, data: text.encode(`${tag}-${i}`) }));
        try {
          const result = await a.client.batch(ops);
          assert.equal(result.lastSeq - result.firstSeq + 1, size);
          acked.set(tag, { firstSeq: result.firstSeq, size });
        } catch {
          return;
        }
      }
    });
    await waitFor('a few hundred acknowledged batches', () => (acked.size >= 300 ? true : undefined), 30_000);
    await a.process.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);
    const highest = Math.max(...[...acked.values()].map((batch) => batch.firstSeq + batch.size - 1));

    a = await startAgent('gw-a', a.configFile, a.api);
    const committed = (await a.client.status()).watermarks.committed as number;
    assert.ok(committed >= highest, `committed ${committed} < highest acknowledged ${highest}`);
    const onA = await logTexts(a, committed);
    for (const [tag, batch] of acked) {
      for (let i = 0; i < batch.size; i++) {
        const expected = i % 10 === 9 ? `put ${tag}/${i}` : `${tag}-${i}`;
        assert.equal(onA.get(batch.firstSeq + i), expected, `acknowledged batch ${tag} entry ${i} at seq ${batch.firstSeq + i}`);
      }
    }
    // Whole or not at all: count each batch's entries in the log, acknowledged or not.
    const found = new Map<string, number>();
    for (const value of onA.values()) {
      const tag = /^(?:put )?(w\d+-b\d+)[-/]/.exec(value)?.[1];
      if (tag) found.set(tag, (found.get(tag) ?? 0) + 1);
    }
    for (const [tag, count] of found) assert.equal(count, sizes.get(tag), `batch ${tag} is in the log whole (${count} of ${sizes.get(tag)})`);
    assert.ok(found.size >= acked.size);

    await waitFor('the sibling to hold everything acknowledged', async () => ((await b.client.status()).watermarks.committed >= highest ? true : undefined), 30_000);
    const onB = await logTexts(b, highest);
    for (const [tag, batch] of acked) assert.equal(onB.get(batch.firstSeq + batch.size - 1), onA.get(batch.firstSeq + batch.size - 1), `batch ${tag} on the sibling`);
    // Every entry the batch path stored decodes as an op (nothing in the log is foreign to the state).
    for (const value of onA.values()) assert.doesNotMatch(value, /^unknown/);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
