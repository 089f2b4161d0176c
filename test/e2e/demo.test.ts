// The README's first command: `lastgasp demo --json` must end with lost 0 and equal states, having left a
// real unreplicated tail when mains went, and the application having moved: started on gw-a, started on
// gw-b after the brownout, reading there the counter gw-a's application left. Run twice against one real
// mosquitto (each run has its own group, so the first run's retained leader record does not make the second
// run's gw-a a standby), the second signed with a group key file.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';

after(killAll);

const BIN = join(fileURLToPath(import.meta.url), '..', '..', '..', 'agent', 'cli', 'bin.mjs');

function demo(args: readonly string[]): Promise<{ status: number | null; stdout: string; summary: Record<string, unknown> }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'demo', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.once('exit', (status) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').at(-1) ?? '{}';
      let summary: Record<string, unknown> = {};
      try {
        summary = JSON.parse(last) as Record<string, unknown>;
      } catch {
        summary = { unparsed: last };
      }
      resolve({ status, stdout: stdout + stderr, summary });
    });
  });
}

function checkRun(run: { status: number | null; stdout: string; summary: Record<string, unknown> }, writes: number): void {
  const { summary } = run;
  assert.equal(run.status, 0, run.stdout);
  assert.equal(summary.lost, 0);
  assert.equal(summary.stateEqual, true);
  // The workload's writes and the application's, every one of them on the sibling.
  assert.ok((summary.entriesAcked as number) > writes, `entries acknowledged ${summary.entriesAcked}`);
  assert.equal(summary.entriesOnSibling, summary.entriesAcked);
  const app = summary.app as { startedOn: string[]; leftByPrimary: number; readOnSibling: number; writtenOnSibling: number };
  assert.deepEqual(app.startedOn, ['gw-a', 'gw-b'], 'the application started on gw-a, then on gw-b');
  assert.ok(app.leftByPrimary >= 1, 'gw-a\'s application wrote');
  assert.equal(app.readOnSibling, app.leftByPrimary, 'gw-b\'s application read the counter gw-a\'s left');
  assert.equal(app.writtenOnSibling, app.leftByPrimary + 1);
  // The old primary's role manager used to react to leader records while its links were closing (an error
  // about 1 run in 7): a latched node only takes note of the successor now.
  assert.deepEqual(run.stdout.split('\n').filter((line) => line.includes(': ERROR ')), [], 'the demo logged errors');
  for (const step of ['brownout flush', 'stopping the app', 'handoff record published', 'took over from gw-a', 'POWER CUT', 'check:']) {
    assert.ok(run.stdout.includes(step), `the demo's timeline does not show "${step}"`);
  }
}

test('lastgasp demo --json: nothing acknowledged lost, states equal, a real tail flushed, the application moved', async () => {
  const run = await demo(['--steady', '1500', '--burst', '3000']);
  checkRun(run, 4500);
  assert.ok((run.summary.tailAtBrownout as number) >= 3000, `tail at brownout ${run.summary.tailAtBrownout}`);
  for (const key of ['flushMs', 'takeoverMs']) assert.equal(typeof run.summary[key], 'number', key);
});

test('the demo runs twice against one mosquitto, the second time signed with a group key file', async () => {
  const dir = await tempDir('e2e-demo-twice');
  const broker = await startMosquitto(dir.path);
  try {
    checkRun(await demo(['--broker', broker.url, '--steady', '300', '--burst', '600']), 900);
    const keyFile = join(dir.path, 'group.key');
    await writeFile(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    const second = await demo(['--broker', broker.url, '--key-file', keyFile, '--steady', '300', '--burst', '600']);
    checkRun(second, 900);
    assert.match(second.stdout, /group: demo-[0-9a-f]{8}/);
  } finally {
    await broker.stop();
    await dir.remove();
  }
});
