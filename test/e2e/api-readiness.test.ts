// Health that tells the truth (issue 9): /v1/health says the process and its event loop work, /v1/ready says
// whether writes are accepted and why not. A full disk (a real tmpfs filled to the last page) and an I/O fault
// (every file operation failing with EIO, injected under the log of an agent running in this process, as no
// real disk here fails on demand) make the primary not ready; a standby says it is one.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent } from '../../agent/agent.ts';
import { ApiClient } from '../../agent/app/index.ts';
import { validateConfig } from '../../agent/config/index.ts';
import { createNodeStorage, type Storage, type StorageFile } from '../../agent/log/index.ts';
import { isLastgaspError, silentLogger } from '../../agent/util/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

/** Small enough to fill in a moment, large enough for the agent's log, state and token files. */
const TMPFS_BYTES = 4 * 1024 * 1024;
const ENTRY = new Uint8Array(16 * 1024).fill(0x5a);
const smallLog = { segmentBytes: '64KiB', quotaBytes: '2MiB', entryBytesMax: '32KiB' };

test('a full disk makes the primary not ready (LOG_NO_SPACE) while it stays alive; freeing space makes it ready again; a standby says STANDBY', async () => {
  const dir = await tempDir('ready-full');
  const mountPoint = join(dir.path, 'flash');
  await mkdir(mountPoint);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES}`, 'tmpfs', mountPoint]);
  const broker = await startMosquitto(dir.path);
  const base = { group: 'full', replication: { brokers: [{ url: broker.url }], durability: 'broker' }, log: smallLog };
  const configA = await writeAgentConfig(dir.path, 'gw-a', { ...base, role: 'primary', siblings: ['gw-b'], dataDir: join(mountPoint, 'gw-a') });
  const configB = await writeAgentConfig(dir.path, 'gw-b', { ...base, role: 'standby', siblings: ['gw-a'] });
  const filler = join(mountPoint, 'filler');
  let a: AgentProcess | undefined;
  let b: AgentProcess | undefined;
  try {
    a = await startAgent('gw-a', configA.file, configA.api);
    b = await startAgent('gw-b', configB.file, configB.api);
    await a.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    await b.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    assert.deepEqual(await a.client.ready(), { ready: true });
    const standby = await b.client.ready();
    assert.equal(standby.ready, false);
    assert.equal(standby.reason, 'STANDBY');

    await fillUp(filler);
    let refusal: unknown;
    for (let index = 0; index < 1000 && refusal === undefined; index++) await a.client.append(ENTRY).catch((error: unknown) => (refusal = error));
    assert.ok(isLastgaspError(refusal, 'LOG_NO_SPACE'), `expected LOG_NO_SPACE, got ${String(refusal)}`);
    const full = await a.client.ready();
    assert.equal(full.ready, false);
    assert.equal(full.reason, 'LOG_NO_SPACE');
    assert.match(full.message ?? '', /no room for a new log segment/);
    assert.equal(await a.client.health(), true, 'the process is alive: a liveness probe must not restart it');
    assert.equal(((await a.client.status()).ready as { reason: string }).reason, 'LOG_NO_SPACE');

    await rm(filler);
    assert.deepEqual(await a.client.ready(), { ready: true });
    assert.ok((await a.client.append(ENTRY)).seq > 0);
  } finally {
    await a?.stop();
    await b?.stop();
    await broker.stop();
    execFileSync('umount', [mountPoint]);
    await dir.remove();
  }
});

/** Write zeros until the file system refuses (ENOSPC). */
async function fillUp(path: string): Promise<void> {
  const file = await open(path, 'w');
  const chunk = new Uint8Array(64 * 1024);
  try {
    for (;;) await file.write(chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    await file.close();
  }
}

test('after an I/O fault the log is never reported ready, until it has recovered', async () => {
  const dir = await tempDir('ready-fault');
  const broker = await startMosquitto(dir.path);
  const disk = failingStorage(createNodeStorage());
  const parsed = validateConfig({
    node: 'gw-a',
    group: 'fault',
    role: 'primary',
    dataDir: join(dir.path, 'gw-a'),
    api: { listen: '127.0.0.1:0' },
    replication: { brokers: [{ url: broker.url }], durability: 'broker', insecureUnsigned: true },
    log: smallLog,
  });
  assert.ok(parsed.ok);
  const agent = new Agent(parsed.config, { logger: silentLogger, storage: disk.storage });
  let client: ApiClient | undefined;
  try {
    const { api } = await agent.start();
    const live = (client = new ApiClient({ address: api, tokenFile: join(dir.path, 'gw-a', 'api.token') }));
    await waitFor('the primary role', async () => ((await live.ready()).ready ? true : undefined), 30_000);
    await live.append(ENTRY);

    disk.fail('EIO');
    await assert.rejects(live.append(ENTRY), (error) => isLastgaspError(error) && ['LOG_IO', 'LOG_FAULT'].includes(error.code));
    const faulted = await live.ready();
    assert.equal(faulted.ready, false);
    assert.equal(faulted.reason, 'LOG_FAULT');
    assert.equal(await live.health(), true);
    assert.equal(((await live.status()).ready as { reason: string }).reason, 'LOG_FAULT');

    disk.fail(undefined);
    await waitFor('recovery after the fault', async () => ((await live.ready()).ready ? true : undefined), 30_000);
    assert.ok((await live.append(ENTRY)).seq >= 2);
  } finally {
    disk.fail(undefined);
    client?.close();
    await agent.stop();
    await broker.stop();
    await dir.remove();
  }
});

/**
 * The real file system, except that while `fail(code)` is set every read, write, sync, open and listing
 * throws that error, as a dying SD card does. Closing still works, so that the agent can stop cleanly.
 */
function failingStorage(inner: Storage): { storage: Storage; fail(code: string | undefined): void } {
  let failing: string | undefined;
  const check = () => {
    if (failing) throw Object.assign(new Error(`${failing}: injected I/O error`), { code: failing });
  };
  const wrapFile = (file: StorageFile): StorageFile =>
    new Proxy(file, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== 'function' || property === 'close') return typeof value === 'function' ? value.bind(target) : value;
        return (...args: unknown[]) => {
          check();
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  const storage: Storage = new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        check();
        const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        return property === 'open' ? wrapFile(result as StorageFile) : result;
      };
    },
  });
  return { storage, fail: (code) => void (failing = code) };
}
