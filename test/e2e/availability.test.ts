// Availability and late joiners (issue 11, item 4), with a real mosquitto and real agent processes: the plain
// retained availability topic says `online` while an agent runs, `offline` after a clean SIGTERM (published
// by the agent) and after a SIGKILL (the broker's Will); the signed state record says `offline` too. A
// `lastgasp watch` started late sees the group's current state from the retained records, verified with the
// group's keys.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMosquitto } from '../support/mosquitto.ts';
import { startPair } from '../support/agents.ts';
import { killAll, startProcess, type Managed } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');

type Line = { topic: string; retained: boolean; type: string; node?: string; verified?: boolean; message?: Record<string, unknown> | string };

function watch(configFile: string): Managed {
  return startProcess('watch', process.execPath, [BIN, 'watch', '--config', configFile, '--json']);
}

function lineOf(watcher: Managed, match: (line: Line) => boolean, what: string): Promise<Line> {
  return waitFor(what, () => (watcher.jsonLines() as unknown as Line[]).find(match), 30_000).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}; watch printed:\n${watcher.output().slice(0, 3000)}`);
  });
}

test('availability: online while running, offline after SIGTERM and after SIGKILL; a late watch sees the current state', async () => {
  const dir = await tempDir('availability');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'avail', broker.url, { extra: { replication: { durability: 'broker' } } });
  let watcher: Managed | undefined;
  try {
    for (let i = 0; i < 5; i++) await a.client.append(new Uint8Array([i]));
    // Started after the writes: everything it learns about them comes from retained records and heartbeats.
    watcher = watch(a.configFile);
    const w = watcher;
    const leader = await lineOf(w, (line) => line.type === 'leader', 'the retained leader record');
    assert.equal(leader.retained, true);
    assert.equal(leader.verified, true, 'verified with the group\'s public keys from the config');
    assert.equal((leader.message as Record<string, unknown>).node, 'gw-a');
    for (const node of ['gw-a', 'gw-b']) {
      const online = await lineOf(w, (line) => line.type === 'availability' && line.node === node, `${node} availability`);
      assert.equal(online.message, 'online');
      assert.equal(online.topic, `lastgasp/v1/avail/${node}/availability`);
    }
    const state = await lineOf(w, (line) => line.type === 'state' && line.node === 'gw-a' && (line.message as Record<string, unknown>).committed === 5, 'gw-a state at committed 5');
    assert.equal((state.message as Record<string, unknown>).role, 'primary');
    assert.equal(state.verified, true);

    await b.stop('SIGTERM');
    assert.equal(b.process.child.exitCode, 0);
    await lineOf(w, (line) => line.type === 'availability' && line.node === 'gw-b' && line.message === 'offline', 'gw-b offline after SIGTERM');
    await lineOf(w, (line) => line.type === 'state' && line.node === 'gw-b' && (line.message as Record<string, unknown>).state === 'offline', 'gw-b state offline after SIGTERM');
    const lines = b.process.jsonLines();
    const stopping = lines.findIndex((line) => line.msg === 'SIGTERM: stopping');
    assert.ok(stopping > 0);
    assert.deepEqual(lines.slice(stopping).filter((line) => line.level === 'warn' || line.level === 'error'), [], 'a clean stop logs no warning');

    await a.stop('SIGKILL');
    await lineOf(w, (line) => line.type === 'availability' && line.node === 'gw-a' && line.message === 'offline', 'gw-a offline by its Will after SIGKILL');
    await lineOf(w, (line) => line.type === 'state' && line.node === 'gw-a' && (line.message as Record<string, unknown>).state === 'offline', 'gw-a state offline by its Will');
    await watcher.kill('SIGTERM');

    // What a subscriber joining now finds retained: both nodes offline.
    const late = watch(a.configFile);
    for (const node of ['gw-a', 'gw-b']) {
      const retained = await lineOf(late, (line) => line.type === 'availability' && line.node === node, `${node} retained availability`);
      assert.deepEqual([retained.retained, retained.message], [true, 'offline']);
    }
    await late.kill('SIGTERM');
  } finally {
    await watcher?.kill('SIGKILL').catch(() => undefined);
    await a.stop().catch(() => undefined);
    await b.stop().catch(() => undefined);
    await broker.stop();
    await dir.remove();
  }
});
