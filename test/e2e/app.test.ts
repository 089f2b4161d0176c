// The application that moves with leadership (config `app:`), with real parts: a real mosquitto, two agent
// processes and a small application (test/fixtures/counter-app.mjs) that raises a counter in the state and
// writes what it does to a journal file shared by both nodes (appends: the file's order is the real order).
// - brownout: the application runs on gw-a, is stopped before gw-a's handoff goes out, and starts on gw-b,
//   where it reads the counter gw-a's application left;
// - a primary that loses its lease (cut from the broker) stops its application before standing down;
// - an application that keeps crashing is restarted with a growing delay and reported as a crash loop.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const APP = fileURLToPath(new URL('../fixtures/counter-app.mjs', import.meta.url));

type JournalLine = { node: string; pid: number; event: string; counter?: number; epoch?: number; group?: string; appliedSeq?: number };

function journal(file: string): JournalLine[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as JournalLine);
}

function appConfig(journalFile: string, env: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
  return { app: { command: [process.execPath, APP], env: { APP_JOURNAL: journalFile, ...env }, stopTimeoutMs: 3000, ...extra } };
}

function lastAcked(lines: JournalLine[], node: string): number {
  return Math.max(0, ...lines.filter((line) => line.node === node && line.event === 'acked').map((line) => line.counter!));
}

test('brownout: the application stops on the primary before the handoff and resumes on the sibling with the state it left', async () => {
  const dir = await tempDir('e2e-app-move');
  const journalFile = join(dir.path, 'journal.ndjson');
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const { a, b } = await startPair(dir.path, 'appmove', broker.url, {
    extra: appConfig(journalFile),
    extraA: { power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: 30_000, handoffAckTimeoutMs: 5000, cutDelayMs: 200 } },
  });
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    await waitFor('the application to write on gw-a', () => (lastAcked(journal(journalFile), 'gw-a') >= 10 ? true : undefined), 20_000);
    const startA = journal(journalFile).find((line) => line.event === 'start')!;
    assert.deepEqual({ node: startA.node, epoch: startA.epoch, group: startA.group }, { node: 'gw-a', epoch: 1, group: 'appmove' });
    assert.equal((await a.client.status()).app.state, 'running');
    assert.equal((await b.client.status()).app.state, 'stopped', 'the standby runs no application');

    sim.send('ac off');
    sim.send('brownout');
    await a.waitForEvent('handoff');
    await b.waitForEvent('takeover');
    const startB = await waitFor('the application to start on gw-b', () => journal(journalFile).find((line) => line.node === 'gw-b' && line.event === 'start'), 20_000);
    const lines = journal(journalFile);
    const leftOnA = lastAcked(lines, 'gw-a');
    assert.ok(startB.counter! >= leftOnA && startB.counter! <= leftOnA + 1, `gw-b's application read ${startB.counter}, gw-a's left ${leftOnA} acknowledged`);
    assert.equal(startB.epoch, 2);
    // Stopped before it could overlap: gw-a's application took SIGTERM before gw-b's started, and the agent
    // saw it exit before the handoff record went out.
    const termA = lines.findIndex((line) => line.node === 'gw-a' && line.event === 'term');
    assert.ok(termA >= 0 && termA < lines.indexOf(lines.find((line) => line.node === 'gw-b' && line.event === 'start')!), 'gw-a stopped its application before gw-b started one');
    const eventsA = a.events().map((line) => line.event);
    assert.ok(eventsA.indexOf('app-stop') >= 0 && eventsA.indexOf('app-stop') < eventsA.indexOf('handoff'), 'the application exited before the handoff');
    await waitFor('the application to go on writing on gw-b', () => (lastAcked(journal(journalFile), 'gw-b') > startB.counter! ? true : undefined), 20_000);
    assert.equal((await b.client.status()).app.starts, 1);
  } finally {
    await a.stop('SIGKILL');
    await b.stop();
    await sim.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  }
});

test('a primary that loses its lease stops its application before standing down', async () => {
  const dir = await tempDir('e2e-app-lease');
  const journalFile = join(dir.path, 'journal.ndjson');
  const broker = await startMosquitto(dir.path);
  const proxyA = await startTcpProxy({ port: broker.port });
  const fast = { replication: { heartbeatMs: 250 }, takeover: { silenceMs: 3000 } };
  const { a, b } = await startPair(dir.path, 'applease', broker.url, {
    extra: { ...fast, ...appConfig(journalFile) },
    extraA: { replication: { brokers: [{ url: proxyA.url('mqtt') }], heartbeatMs: 250 } },
  });
  try {
    await waitFor('the application to write on gw-a', () => (lastAcked(journal(journalFile), 'gw-a') >= 5 ? true : undefined), 20_000);
    await waitFor('gw-b to hold some of it', async () => ((await b.client.status()).watermarks.committed >= 5 ? true : undefined), 20_000);
    proxyA.pause();
    await a.waitForEvent('lease-lost', () => true, 20_000);
    await a.waitForEvent('app-stop', () => true, 20_000);
    await b.waitForEvent('takeover', () => true, 20_000);
    const startB = await waitFor('the application to start on gw-b', () => journal(journalFile).find((line) => line.node === 'gw-b' && line.event === 'start'), 20_000);
    const lines = journal(journalFile);
    const termA = lines.findIndex((line) => line.node === 'gw-a' && line.event === 'term');
    assert.ok(termA >= 0 && termA < lines.findIndex((line) => line === lines.find((other) => other.node === 'gw-b' && other.event === 'start')), 'gw-a stopped its application before gw-b started one');
    // What gw-a acknowledged after the cut never reached gw-b (it is set aside when gw-a returns), but what
    // replicated before it did: gw-b's application starts from a counter gw-a's raised.
    assert.ok(startB.counter! >= 5 && startB.counter! <= lastAcked(lines, 'gw-a') + 1, `gw-b's application read ${startB.counter}`);
    await proxyA.restore();
    await a.waitForEvent('role', (line) => line.role === 'standby', 20_000);
    const eventsA = a.events();
    const standby = eventsA.findIndex((line) => line.event === 'role' && line.role === 'standby');
    assert.ok(eventsA.findIndex((line) => line.event === 'app-stop') < standby, 'the application stopped before gw-a stood by');
    assert.equal((await a.client.status()).app.state, 'stopped');
  } finally {
    await a.stop();
    await b.stop();
    await proxyA.close();
    await broker.stop();
    await dir.remove();
  }
});

test('an application that keeps crashing is restarted with a growing delay and reported as a crash loop', async () => {
  const dir = await tempDir('e2e-app-crash');
  const journalFile = join(dir.path, 'journal.ndjson');
  const broker = await startMosquitto(dir.path);
  const { a, b } = await startPair(dir.path, 'appcrash', broker.url, {
    extra: appConfig(journalFile, { APP_CRASH_AFTER_MS: '50' }, { restartDelayMs: 100, restartDelayMsMax: 400, stableMs: 10_000 }),
  });
  try {
    await a.waitForEvent('app-exit', (line) => (line.exits as number) >= 5, 30_000);
    const exits = a.events().filter((line) => line.event === 'app-exit');
    assert.deepEqual(exits.slice(0, 5).map((line) => line.restartInMs), [100, 200, 400, 400, 400], 'the delay doubles up to restartDelayMsMax');
    assert.deepEqual(exits.slice(0, 5).map((line) => line.crashLoop), [false, false, true, true, true]);
    assert.ok(exits.every((line) => line.code === 3));
    const app = (await a.client.status()).app;
    assert.equal(app.crashLoop, true);
    assert.ok(app.exits >= 5 && app.restarts >= 4);
    assert.ok(journal(journalFile).every((line) => line.node === 'gw-a'), 'the standby never ran the application');
    assert.equal((await b.client.status()).app.starts, 0);
  } finally {
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
