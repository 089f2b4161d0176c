// Slowloris against a real agent started with the usual service descriptor limit (1024): thousands of
// connections that trickle headers and never finish a request, from many source addresses. The API's caps
// hold below the limit, so the agent keeps descriptors for its log and its broker links: a broker restarted
// in the middle of the attack is reconnected to, replication to the sibling goes on, and every write the
// application had acknowledged is on the sibling at the end (issue 9).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMosquitto } from '../support/mosquitto.ts';
import { settledState, startAgent, writeAgentConfig } from '../support/agents.ts';
import { killAll, startProcess } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';

after(killAll);

const SLOWLORIS = join(fileURLToPath(import.meta.url), '..', '..', 'support', 'slowloris.mjs');
/** The soft limit systemd gives a service that does not raise LimitNOFILE. */
const NOFILE = 1024;
const ATTACK_CONNECTIONS = 2000;
/**
 * Half the connections come from one address (over the per-client cap of 64), the other half from 40 more
 * (25 each, under that cap: together over the total cap).
 */
const ATTACK_SOURCES = 40;

test('thousands of slow connections neither starve the broker links nor cost an acknowledged write', async (t) => {
  const dir = await tempDir('slowloris');
  let broker = await startMosquitto(dir.path);
  const base = { group: 'loris', replication: { brokers: [{ url: broker.url }] } };
  const host = '127.0.0.1';
  const port = await freePort();
  // connectionsMax asks for more than the descriptor limit allows: the agent must lower it.
  const api = { listen: `${host}:${port}`, connectionsMax: 4096, connectionsPerClientMax: 64, headersTimeoutMs: 3000, requestTimeoutMs: 10_000 };
  const configA = await writeAgentConfig(dir.path, 'gw-a', { ...base, role: 'primary', siblings: ['gw-b'], api });
  const configB = await writeAgentConfig(dir.path, 'gw-b', { ...base, role: 'standby', siblings: ['gw-a'] });
  const a = await startAgent('gw-a', configA.file, api.listen, { nofile: NOFILE });
  const b = await startAgent('gw-b', configB.file, configB.api);
  let attack: ReturnType<typeof startProcess> | undefined;
  const acked: Array<{ key: string; seq: number }> = [];
  let writing = true;
  let refusedWrites = 0;
  try {
    await a.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    await b.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    // The writer opens its connections before the attack, as an application that runs all along does.
    const writer = (async () => {
      for (let index = 0; writing; index++) {
        try {
          const result = await a.client.put(`k${index}`, `v${index}`);
          acked.push({ key: `k${index}`, seq: result.seq });
        } catch {
          refusedWrites++;
        }
      }
    })();
    await waitFor('the first writes', () => (acked.length >= 20 ? true : undefined), 20_000);

    attack = startProcess('slowloris', process.execPath, [SLOWLORIS, JSON.stringify({ host, port, connections: ATTACK_CONNECTIONS, sources: ATTACK_SOURCES, trickleMs: 1000, reconnectMs: 1000 })]);
    await waitFor('the API at its connection cap', async () => {
      const counters = (await a.client.status()).api;
      return counters.apiConnectionsRefused > 0 && counters.apiConnectionsRefusedPerClient > 0 ? counters : undefined;
    }, 30_000);

    // Under attack, the broker goes away and comes back: both broker links need new descriptors now.
    await broker.stop();
    broker = await broker.restart();
    const ackedBeforeRestart = acked.length;
    await waitFor('writes acknowledged after the broker restart', () => (acked.length >= ackedBeforeRestart + 50 ? true : undefined), 60_000);
    const target = acked.at(-1)!.seq;
    await waitFor(`the sibling at seq ${target} while the attack goes on`, async () => ((await b.client.status()).watermarks.committed >= target ? true : undefined), 60_000);

    const counters = (await a.client.status()).api;
    assert.equal(counters.apiConnectionsMax, NOFILE - 256, 'the configured 4096 is lowered under the descriptor limit');
    assert.ok(counters.apiConnectionsOpen <= counters.apiConnectionsMax);
    const descriptors = (await readdir(`/proc/${a.process.child.pid}/fd`)).length;
    assert.ok(descriptors < NOFILE, `gw-a holds ${descriptors} descriptors`);
    // The attack was real: the kernel let every one of its connections through (on a loaded machine the
    // attacker may still be opening them when the writes above are done).
    await waitFor('the attacker to have opened all its connections', () => (attack!.jsonLines().some((line) => line.event === 'slowloris' && (line.opened as number) >= ATTACK_CONNECTIONS) ? true : undefined), 60_000);
    const attackerLines = attack.jsonLines().filter((line) => line.event === 'slowloris');
    assert.ok(!a.process.output().includes('EMFILE'), 'gw-a never ran out of descriptors');
    t.diagnostic(`gw-a under attack: ${descriptors} descriptors, ${JSON.stringify(counters)}; attacker ${JSON.stringify(attackerLines.at(-1))}`);

    await attack.kill('SIGKILL');
    attack = undefined;
    writing = false;
    await writer;
    const last = acked.at(-1)!.seq;
    const listing = await settledState(b, last, 60_000);
    const onSibling = new Set(listing.keys);
    const lost = acked.filter((entry) => !onSibling.has(entry.key));
    assert.deepEqual(lost, [], `${lost.length} acknowledged writes missing on gw-b (${acked.length} acknowledged, ${refusedWrites} refused)`);
    t.diagnostic(`${acked.length} writes acknowledged (all on gw-b), ${refusedWrites} refused`);
  } finally {
    writing = false;
    await attack?.kill('SIGKILL');
    await a.stop();
    await b.stop();
    await broker.stop();
    await dir.remove();
  }
});
