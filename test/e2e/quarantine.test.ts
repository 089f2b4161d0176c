// `lastgasp quarantine` with real agents (issue 15, item 3): a silence takeover strands a suffix of
// acknowledged writes on the old primary (puts, a delete, an opaque entry); restarted, it quarantines them.
// list and export show them from its data directory while it runs; replay writes them on the new primary
// with new seqs and a provenance record each, and a second replay writes nothing.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeOp, OP_PUT } from '../../agent/app/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [BIN, 'quarantine', ...args], { encoding: 'utf8' });
}

test('quarantine list, export and replay: the writes stranded by a silence takeover land on the new primary with their provenance', async () => {
  const dir = await tempDir('quarantine');
  const broker = await startMosquitto(dir.path);
  const pair = await startPair(dir.path, 'quarantine', broker.url, { extra: { replication: { heartbeatMs: 200 }, takeover: { silenceMs: 1500 } } });
  let a = pair.a;
  const b = pair.b;
  const raw = await mkdtemp(join(tmpdir(), 'lastgasp-quarantine-raw-'));
  try {
    for (let index = 0; index < 20; index++) await a.client.put(`k${index % 5}`, `replicated-${index}`);
    await waitFor('the sibling to hold 20 entries', async () => ((await b.client.status()).watermarks.committed >= 20 ? true : undefined));
    await a.client.setReplicationPaused(true);
    const stranded = [
      await a.client.put('stranded0', 'only on gw-a'),
      await a.client.put('stranded1', 'also only on gw-a'),
      await a.client.delete('k0'),
      await a.client.append(new TextEncoder().encode('opaque from gw-a')),
    ];
    assert.deepEqual(stranded.map((write) => write.seq), [21, 22, 23, 24]);
    await a.process.kill('SIGKILL');
    await b.waitForEvent('takeover', (line) => line.cause === 'silence', 20_000);
    const firstOfB = await b.client.put('after', 'written by gw-b');
    assert.equal(firstOfB.seq, 21, 'the new epoch reuses the stranded seqs');

    a = await startAgent('gw-a', a.configFile, a.api);
    await a.waitForEvent('quarantine');
    const dataDir = join(dir.path, 'gw-a');

    const listed = cli('list', dataDir, '--json');
    assert.equal(listed.status, 0, listed.stderr);
    const entries = (JSON.parse(listed.stdout) as { entries: Array<Record<string, unknown>> }).entries;
    assert.deepEqual(entries.map((entry) => [entry.epoch, entry.seq, entry.op, entry.key]), [
      [1, 21, 'put', 'stranded0'],
      [1, 22, 'put', 'stranded1'],
      [1, 23, 'delete', 'k0'],
      [1, 24, 'entry', undefined],
    ]);
    assert.equal(Buffer.from(entries[0]!.value as string, 'base64').toString(), 'only on gw-a');
    const text = cli('list', dataDir);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /4 entries, seq 21\.\.24/);

    const jsonl = cli('export', dataDir);
    assert.equal(jsonl.status, 0, jsonl.stderr);
    assert.deepEqual(jsonl.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>), entries);
    const exported = cli('export', dataDir, '--format', 'raw', '--out', raw);
    assert.equal(exported.status, 0, exported.stderr);
    assert.deepEqual((await readdir(raw)).sort(), ['1-21.cbor', '1-22.cbor', '1-23.cbor', '1-24.cbor']);
    const first = decodeOp(new Uint8Array(await readFile(join(raw, '1-21.cbor'))));
    assert.ok(first.ok && first.op.op === OP_PUT && first.op.key === 'stranded0');

    const replayed = cli('replay', dataDir, '--config', b.configFile);
    assert.equal(replayed.status, 0, replayed.stderr);
    assert.match(replayed.stdout, /replayed 4 writes, skipped 0/);
    assert.equal(new TextDecoder().decode(await b.client.get('stranded0')), 'only on gw-a');
    assert.equal(new TextDecoder().decode(await b.client.get('stranded1')), 'also only on gw-a');
    assert.equal(await b.client.get('k0'), undefined, 'the stranded delete was applied');
    const record = JSON.parse(new TextDecoder().decode(await b.client.get('lastgasp/replayed/1-21'))) as Record<string, any>;
    assert.equal(record.from.seq, 21);
    assert.equal(record.from.epoch, 1);
    assert.equal(record.key, 'stranded0');
    assert.equal(record.epoch, 2);
    assert.ok(record.seq > firstOfB.seq, 'a replayed write gets a new seq on the primary');
    const opaque = JSON.parse(new TextDecoder().decode(await b.client.get('lastgasp/replayed/1-24'))) as Record<string, any>;
    const onB = (await b.client.entries(opaque.seq, 1)).entries[0]!;
    assert.equal(onB.seq, opaque.seq);
    assert.equal(Buffer.from(String(onB.data), 'base64').toString(), 'opaque from gw-a');

    const again = cli('replay', dataDir, '--config', b.configFile);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /replayed 0 writes, skipped 4/);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await rm(raw, { recursive: true, force: true });
    await dir.remove();
  }
});
