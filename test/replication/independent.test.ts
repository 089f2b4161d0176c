// Three independent mosquitto brokers (issue 5, cluster shape b): the primary publishes every batch to all
// of them and counts a quorum per batch; the sibling subscribes to all of them and applies each entry once.
// One broker SIGKILLed mid-stream and restarted; one broker refusing by ACL (a minority: replication goes
// on, the refusals are counted and logged); two brokers gone (no quorum: nothing counts as replicated
// until one returns).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BROKER_CONFIG_DIR } from '../../broker-config/index.ts';
import { authVars, startMosquitto, startMosquittoSet, writePasswordFile, type Mosquitto } from '../support/mosquitto.ts';
import { killAll } from '../support/processes.ts';
import { tempDir, waitFor } from '../support/ports.ts';
import { assertSameLog, errorLines, startNode, startWriter, waitCommitted, waitReplicated, waitWritten } from './support/nodes.ts';

after(killAll);

test('fan-out to three brokers, one SIGKILLed mid-stream and restarted: the sibling applies every entry once, in order', async () => {
  const dir = await tempDir('indep-kill');
  const set = await startMosquittoSet(dir.path, 3);
  const brokers = [...set.brokers];
  const common = { dir: dir.path, brokers: set.urls, mode: 'independent' as const, keepaliveS: 1 };
  const a = await startNode({ ...common, name: 'gw-a', role: 'primary', siblings: ['gw-b'] });
  const b = await startNode({ ...common, name: 'gw-b', role: 'standby', siblings: ['gw-a'] });
  try {
    const writer = startWriter(a, 'fan', 8);
    await waitWritten(writer, 3000);
    await brokers[1]!.stop('SIGKILL');
    await waitWritten(writer, writer.acked.length + 2000);
    brokers[1] = await brokers[1]!.restart();
    await waitFor('both gateways back on the restarted broker', () => (a.links()[1]!.connected && b.links()[1]!.connected ? true : undefined), 30_000);
    const atRestart = a.links().map((link) => link.publishes as number);
    await waitWritten(writer, writer.acked.length + 2000);
    const acked = await writer.stop();
    const committed = a.log.watermarks().committed;
    assert.equal(acked.at(-1), committed);
    await waitCommitted(b, committed, 60_000);
    await waitReplicated(a, committed);
    await assertSameLog(a, b, committed);
    assert.ok((b.receiver().duplicateBatches ?? 0) > 0, 'the same batches came through several brokers and were dropped as duplicates');
    assert.equal(a.publisher().refused, 0, 'a quorum of two was there all along');
    // How many batches there are depends on how appends and acks interleave; what matters is that the
    // restarted broker is in the fan-out again: after its restart it was handed every batch the others were.
    const links = a.links();
    // A batch goes out only with a quorum of two links up, so the links sent at least two publishes per batch,
    // less those of a batch whose connection dropped before it was written (sent again, and counted again,
    // as the batch that replaced it), and the two brokers that stayed up were each sent some.
    const sent = links.map((link) => link.publishes as number);
    const [batches, resent] = [a.publisher().batches as number, a.publisher().resent as number];
    assert.ok(sent.reduce((sum, count) => sum + count, 0) >= 2 * (batches - resent), `the links sent ${sent.join(' + ')} publishes for ${batches} batches (${resent} sent again)`);
    for (const index of [0, 2]) assert.ok(sent[index]! > 0, `${String(links[index]!.broker)} got the fan-out`);
    const sinceRestart = links.map((link, index) => (link.publishes as number) - atRestart[index]!);
    assert.ok(sinceRestart[1]! > 0, 'the restarted broker got batches again');
    // Every batch since its restart, give or take the last: a batch that the other two already acknowledged (a
    // quorum, so the writer is done) can still wait in the restarted broker's window when the counters are read
    // (a link counts a publish when it sends it, not when it is handed it).
    if (links[1]!.connects === 2) assert.ok(sinceRestart[1]! >= sinceRestart[0]! - 1, `the restarted broker got ${sinceRestart[1]} of the ${sinceRestart[0]} batches since its restart`);
  } finally {
    await a.stop();
    await b.stop();
    await Promise.all(brokers.map((broker) => broker.stop()));
    await dir.remove();
  }
});

test('a broker whose ACL refuses the batches is a counted, logged minority; the quorum of the other two carries on', async () => {
  const dir = await tempDir('indep-acl');
  const passwords = await writePasswordFile(join(dir.path, 'passwords'), { 'gw-a': 'pass-a', 'gw-b': 'pass-b' });
  // The third broker's ACL misses gw-a's log topic, as a broker configured by mistake would.
  const acl = (await readFile(join(BROKER_CONFIG_DIR, 'mosquitto', 'acl.conf'), 'utf8')).replace('topic write lastgasp/v1/line1/log/gw-a\n', '');
  const strictAcl = join(dir.path, 'acl-without-log.conf');
  await writeFile(strictAcl, acl);
  const brokers: Mosquitto[] = [];
  for (const [index, aclFile] of [undefined, undefined, strictAcl].entries()) {
    const dataDir = join(dir.path, `broker-${index}`);
    await mkdir(dataDir, { recursive: true });
    brokers.push(await startMosquitto(dataDir, { config: 'auth.conf', vars: authVars(passwords, aclFile) }));
  }
  const common = { dir: dir.path, brokers: brokers.map((broker) => broker.url), mode: 'independent' as const };
  const a = await startNode({ ...common, name: 'gw-a', role: 'primary', siblings: ['gw-b'], username: 'gw-a', password: 'pass-a' });
  const b = await startNode({ ...common, name: 'gw-b', role: 'standby', siblings: ['gw-a'], username: 'gw-b', password: 'pass-b' });
  try {
    // The refusing broker must be in the fan-out when the batches go: on a loaded machine its (authenticated)
    // connection can come up after the first appends, which would then never meet its ACL.
    await waitFor('all three of gw-a\'s links up', () => (a.links().every((link) => link.connected === true) ? true : undefined), 30_000);
    await a.append(500, 'acl', 4);
    await waitCommitted(b, 500);
    await waitReplicated(a, 500);
    await assertSameLog(a, b, 500);
    const stats = a.publisher();
    assert.ok((stats.minorityRefusals as number) > 0);
    assert.equal(stats.refused, 0);
    assert.ok((a.links()[2]!.pubackFailures as number) > 0);
    assert.equal(a.links()[0]!.pubackFailures, 0);
    assert.ok(errorLines(a, /refused a publish to lastgasp\/v1\/line1\/log\/gw-a: not authorized \(0x87\)/).length > 0);
  } finally {
    await a.stop();
    await b.stop();
    await Promise.all(brokers.map((broker) => broker.stop()));
    await dir.remove();
  }
});

test('durability broker with two of three brokers hung: one PUBACK is no quorum; the batches count once a second broker answers', async () => {
  const dir = await tempDir('indep-quorum');
  const set = await startMosquittoSet(dir.path, 3);
  const brokers = set.brokers;
  const a = await startNode({ dir: dir.path, name: 'gw-a', role: 'primary', brokers: set.urls, mode: 'independent', durability: 'broker', siblings: ['gw-b'], keepaliveS: 30 });
  try {
    await a.append(100, 'three');
    await waitReplicated(a, 100);
    brokers[0]!.suspend();
    brokers[2]!.suspend();
    a.replication.publisher.setPaused(true);
    await a.append(100, 'one');
    a.replication.publisher.setPaused(false);
    await waitFor('the batches published to all three and acknowledged by the one that answers', () =>
      (a.publisher().entriesPublished as number) >= 200 && a.links()[1]!.inflight === 0 ? true : undefined,
    );
    assert.equal(a.log.watermarks().replicated, 100, 'one PUBACK is not a quorum of two');
    assert.ok((a.links()[0]!.inflight as number) > 0 && (a.links()[2]!.inflight as number) > 0);
    brokers[2]!.resume();
    await waitReplicated(a, 200);
    assert.equal(a.publisher().refused, 0);
  } finally {
    await a.stop();
    await set.stop();
    await dir.remove();
  }
});
