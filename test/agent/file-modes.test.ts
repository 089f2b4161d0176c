/**
 * Files are private whatever the umask (issue 9): a real agent started under umask 000 (which would leave
 * everything world-writable) and under umask 0277 (which would leave its own files unwritable to it) creates
 * its data directory 0700 and every file in it 0600: segments, lock, leader record, KV snapshot.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../../agent/app/index.ts';
import { writeAgentConfig } from '../support/agents.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';
import { killAll, startProcess } from '../support/processes.ts';

after(killAll);

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');

function modes(dir: string, out: Map<string, number> = new Map()): Map<string, number> {
  out.set(dir, statSync(dir).mode & 0o777);
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) modes(path, out);
    else out.set(path, statSync(path).mode & 0o777);
  }
  return out;
}

for (const umask of ['000', '277']) {
  test(`under umask ${umask} the agent's directories are 0700 and its files 0600`, async () => {
    const dir = await tempDir(`modes-${umask}`);
    // No broker answers: the primary decides its role alone after brokerWaitMs and accepts writes.
    const config = await writeAgentConfig(dir.path, 'gw-a', {
      group: 'modes',
      role: 'primary',
      siblings: ['gw-b'],
      dataDir: join(dir.path, 'data', 'gw-a'),
      replication: { brokers: [{ url: `mqtt://127.0.0.1:${await freePort()}` }] },
      takeover: { brokerWaitMs: 500 },
      log: { segmentBytes: 64 * 1024, entryBytesMax: 4096, snapshotEveryEntries: 20 },
    });
    const agent = startProcess('agent:gw-a', '/bin/sh', ['-c', `umask ${umask} && exec "$0" "$@"`, process.execPath, BIN, 'run', '--config', config.file]);
    const client = new ApiClient({ address: config.api });
    try {
      await agent.waitForOutput(/"event":"ready"/, 30_000);
      await waitFor('the primary to accept writes', async () => (await client.put('k0', 'v').then(() => true).catch(() => undefined)), 20_000);
      for (let i = 1; i < 50; i++) await client.put(`k${i}`, 'v');
      await waitFor('a snapshot and the leader record', () => {
        const names = readdirSync(join(dir.path, 'data', 'gw-a'));
        return names.includes('kv-snapshot.cbor') && names.includes('leader.json') ? true : undefined;
      });
      const seen = modes(join(dir.path, 'data'));
      // The directory the agent made above its data directory (`data`) is private too.
      const wrong = [...seen].filter(([path, mode]) => mode !== (statSync(path).isDirectory() ? 0o700 : 0o600));
      assert.deepEqual(wrong.map(([path, mode]) => `${path.slice(dir.path.length)} ${mode.toString(8)}`), []);
      const files = [...seen.keys()].map((path) => path.slice(dir.path.length));
      for (const expected of ['/data/gw-a/log', '/data/gw-a/leader.json', '/data/gw-a/kv-snapshot.cbor']) assert.ok(files.includes(expected), `${expected} among ${files.join(' ')}`);
      assert.ok(files.some((path) => /\/log\/seg-\d+\.log$/.test(path)) && files.some((path) => /\/log\/lock\.\d+$/.test(path)), `a segment and a lock among ${files.join(' ')}`);
    } finally {
      client.close();
      await agent.kill('SIGTERM');
      await dir.remove();
    }
  });
}
