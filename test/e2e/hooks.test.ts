// Event hooks on a real brownout (issue 11, item 5): a real mosquitto, the BMS simulator on a socat pty, the
// primary and its sibling as processes. The hooks write the LASTGASP_EVENT_* environment they were given to
// a file; one of them keeps running for a minute, and the flush and handoff go on without it.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startPair } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';

after(killAll);

// Appends its LASTGASP_EVENT* environment as one JSON line to argv[2]; with "hold", first notes its pid in
// argv[2].pid (for the test to end it), and sleeps a minute after.
const HOOK_SCRIPT = `
const fs = require('node:fs');
if (process.argv[3] === 'hold') fs.appendFileSync(process.argv[2] + '.pid', process.pid + '\\n');
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => key.startsWith('LASTGASP_EVENT')));
console.log('hook ran for ' + env.LASTGASP_EVENT);
fs.appendFileSync(process.argv[2], JSON.stringify(env) + '\\n');
if (process.argv[3] === 'hold') setTimeout(() => undefined, 60_000);
`;

function events(file: string): Array<Record<string, string>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, string>);
}

test('hooks: powerLost (failing, counted), brownout (still running through the flush), flushDone, handoff on the primary; takeover on the sibling', async () => {
  const dir = await tempDir('hooks');
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  const script = join(dir.path, 'hook.cjs');
  await writeFile(script, HOOK_SCRIPT);
  const fileA = join(dir.path, 'events-a.jsonl');
  const fileB = join(dir.path, 'events-b.jsonl');
  const hook = (file: string, ...extra: string[]) => [process.execPath, script, file, ...extra];
  const { a, b } = await startPair(dir.path, 'hooks', broker.url, {
    extra: { replication: { durability: 'broker' } },
    extraA: {
      power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: 20_000, handoffAckTimeoutMs: 5000, cutDelayMs: 200 },
      hooks: { powerLost: [join(dir.path, 'no-such-hook')], brownout: hook(fileA, 'hold'), flushDone: hook(fileA), handoff: hook(fileA), timeoutMs: 120_000 },
    },
    extraB: { hooks: { takeover: hook(fileB) } },
  });
  try {
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    for (let i = 0; i < 20; i++) await a.client.put(`k${i}`, `v${i}`);

    sim.send('ac off');
    const failed = await waitFor('the failing powerLost hook counted', async () => {
      const hooks = (await a.client.status()).hooks as Record<string, number>;
      return hooks.hooksFailed === 1 ? hooks : undefined;
    }, 20_000);
    assert.equal(failed.hooksRun, 1);
    assert.ok(a.events().some((line) => line.event === 'hook' && line.hook === 'powerLost' && line.failed === true));

    sim.send('brownout');
    // The brownout hook sleeps a minute; the handoff is published and taken over long before it ends.
    await a.waitForEvent('handoff');
    await b.waitForEvent('takeover');
    const seenA = await waitFor('brownout, flushDone and handoff hooks', () => {
      const got = events(fileA);
      return ['brownout', 'flushDone', 'handoff'].every((name) => got.some((event) => event.LASTGASP_EVENT === name)) ? got : undefined;
    }, 20_000).catch((error: unknown) => {
      const hookLines = a.events().filter((line) => String(line.event).startsWith('hook') || line.event === 'power-state');
      throw new Error(`${(error as Error).message}: ${JSON.stringify(events(fileA))} ${JSON.stringify(hookLines)}`);
    });
    const byName = (name: string) => seenA.find((event) => event.LASTGASP_EVENT === name)!;
    assert.equal(byName('brownout').LASTGASP_EVENT_NODE, 'gw-a');
    assert.equal(byName('brownout').LASTGASP_EVENT_GROUP, 'hooks');
    assert.equal(byName('flushDone').LASTGASP_EVENT_COMPLETE, 'true');
    assert.equal(byName('flushDone').LASTGASP_EVENT_LAST_SEQ, '20');
    assert.equal(byName('handoff').LASTGASP_EVENT_TO, 'gw-b');
    assert.equal(byName('handoff').LASTGASP_EVENT_COMMITTED, '20');
    await a.waitForEvent('hook-output', (line) => line.msg === 'hook brownout: hook ran for brownout');
    const takeover = await waitFor('the takeover hook', () => events(fileB).find((event) => event.LASTGASP_EVENT === 'takeover'), 20_000);
    assert.equal(takeover.LASTGASP_EVENT_NODE, 'gw-b');
    assert.equal(takeover.LASTGASP_EVENT_EPOCH, '2');
  } finally {
    const held = `${fileA}.pid`;
    for (const pid of existsSync(held) ? readFileSync(held, 'utf8').trim().split('\n') : []) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await a.stop('SIGKILL');
    await b.stop();
    await sim.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  }
});
