// Two claims racing for the lead, as the role manager sees them: its own claim comes back first (it won),
// and a rival's claim made without knowing it arrives right behind, while this node is still saving its own
// record. The rival must be judged against the epoch just won: it is dropped as a superseded claim, this node
// leads, keeps its own record, and reports the takeover's first seq from the record it claimed. (In the
// leadership campaign, seed 893780117, the rival's record was followed and saved in that window, and the
// takeover reported the rival's first seq.) The replication is an in-process fake behind the role manager's
// interface, because the test must put the two records in that order at that moment; the log is a real one.
// The same rig holds a successor to the tail behind an incomplete handoff: it claims only once the tail has
// ended and the batches received before its end are stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { createFlashLog } from '../../agent/log/index.ts';
import type { LeaderMessage, Replication } from '../../agent/replication/index.ts';
import { RoleManager, type RoleHost, type TakeoverRecord } from '../../agent/takeover/index.ts';
import { silentLogger } from '../../agent/util/index.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { tempDir, waitFor } from '../support/ports.ts';

const GROUP = 'g';

/** What the role manager uses of Replication; every leader record it publishes is handed to `onPublish`. */
class FakeReplication extends EventEmitter {
  readonly brokerQuorum = 1;
  readonly connected = true;
  readonly published: LeaderMessage[] = [];
  onPublish: (record: LeaderMessage) => void = () => undefined;

  /** The receiver's queue: settled unless a test holds it. */
  settled: Promise<void> = Promise.resolve();

  followEpoch(): void {}

  batchesSettled(): Promise<void> {
    return this.settled;
  }

  async setRole(): Promise<void> {}

  async publishLeader(record: LeaderMessage): Promise<void> {
    this.published.push(record);
    this.onPublish(record);
  }
}

async function standbyOf(t: { after(fn: () => Promise<void>): void }, name: string) {
  const dir = await tempDir(name);
  const log = createFlashLog({ dir: join(dir.path, 'log'), segmentBytes: 1024 * 1024 });
  await log.open();
  const clock = new FakeClock();
  const replication = new FakeReplication();
  const host: RoleHost = {
    prepareRole: async () => undefined,
    roleChanged: () => undefined,
    beforeStandDown: async () => undefined,
    stateRewound: async () => undefined,
    // Every heartbeat comes back from the one broker at once: the lease and the round trips hold.
    publishHeartbeat: async (atMs) => void queueMicrotask(() => replication.emit('ownState', { atMs }, 0)),
  };
  const roles = new RoleManager({
    node: 'gw-a',
    group: GROUP,
    siblings: ['gw-b'],
    configuredRole: 'standby',
    onHandoff: true,
    silenceMs: 3000,
    leaseMs: 2200,
    heartbeatMs: 500,
    brokerWaitMs: 1000,
    leaderFile: join(dir.path, 'leader.json'),
    log,
    replication: replication as unknown as Replication,
    host,
    logger: silentLogger,
    clock,
  });
  t.after(async () => {
    roles.stop();
    await log.close();
    await dir.remove();
  });
  const status = () => roles.status() as { leaderRecordsDropped: Record<string, number>; epochFloor: number; lastTakeover?: TakeoverRecord };
  await roles.start();
  assert.equal(roles.role, 'standby');
  return { roles, replication, clock, log, status };
}

test('a rival claim delivered right behind the claim this node won is dropped, though its own record is not saved yet', async (t) => {
  const { roles, replication, clock, log, status } = await standbyOf(t, 'roles-claims');

  // gw-b leads epoch 2 (gw-a owns the odd epochs of this group, gw-b the even ones).
  replication.emit('leader', { group: GROUP, kind: 'leader', epoch: 2, node: 'gw-b', since: 1, prev: 1, atMs: clock.nowMs() } satisfies LeaderMessage);
  await waitFor('gw-b followed', () => (roles.leaderRecord?.epoch === 2 ? true : undefined), 5000, 1);

  // gw-a's claim to epoch 3 comes back first; gw-b's claim to epoch 4, made knowing only epoch 2, right behind.
  const rival: LeaderMessage = { group: GROUP, kind: 'leader', epoch: 4, node: 'gw-b', since: 40, prev: 2, atMs: clock.nowMs() };
  replication.onPublish = (record) => {
    if (record.node !== 'gw-a' || record.epoch !== 3) return;
    replication.emit('leader', record);
    replication.emit('leader', rival);
  };
  replication.emit('leader', { group: GROUP, kind: 'handoff', epoch: 2, node: 'gw-b', to: 'gw-a', lastSeq: 0, committed: 0, complete: true, atMs: clock.nowMs() } satisfies LeaderMessage);
  await waitFor('gw-a to lead', () => (roles.role === 'primary' ? true : undefined), 5000, 1);
  // Judged right after gw-a's own claim; followed (the old flaw), it never shows up as dropped.
  await waitFor('the rival claim dropped', () => (status().leaderRecordsDropped['superseded-claim'] === 1 ? true : undefined), 2000, 1).catch(() => undefined);
  assert.equal(status().leaderRecordsDropped['superseded-claim'], 1, 'the rival claim was dropped as superseded');

  const claim = replication.published.find((record) => record.node === 'gw-a' && record.epoch === 3)!;
  assert.ok(claim, 'gw-a claimed epoch 3');
  assert.equal(roles.role, 'primary');
  assert.deepEqual([roles.leaderRecord?.node, roles.leaderRecord?.epoch], ['gw-a', 3], 'gw-a keeps its own record, not the rival\'s');
  assert.equal(status().epochFloor, 3);
  assert.equal(log.epoch, 3);
  const takeover = status().lastTakeover!;
  assert.equal(takeover.since, claim.since, 'the takeover reports the first seq of the epoch it claimed');
  assert.equal(takeover.epoch, 3);
});

test('after an incomplete handoff with a tail, the successor claims once the tail ended and what came before its end is stored', async (t) => {
  const { roles, replication, clock, status } = await standbyOf(t, 'roles-tail');
  replication.emit('leader', { group: GROUP, kind: 'leader', epoch: 2, node: 'gw-b', since: 1, prev: 1, atMs: clock.nowMs() } satisfies LeaderMessage);
  await waitFor('gw-b followed', () => (roles.leaderRecord?.epoch === 2 ? true : undefined), 5000, 1);
  let settle = () => undefined as void;
  replication.settled = new Promise<void>((resolve) => (settle = resolve));
  replication.emit('leader', { group: GROUP, kind: 'handoff', epoch: 2, node: 'gw-b', to: 'gw-a', lastSeq: 0, committed: 5, complete: false, tailMs: 300, atMs: clock.nowMs() } satisfies LeaderMessage);
  await waitFor('the handoff followed', () => (roles.leaderRecord?.kind === 'handoff' ? true : undefined), 5000, 1);
  await clock.advanceSettling(100);
  assert.equal(roles.role, 'standby', 'the tail is still coming: no claim yet');
  // gw-b's Will: its connection is gone, nothing more of the tail comes.
  replication.emit('state', { group: GROUP, node: 'gw-b', role: 'unknown', state: 'offline', epoch: 2, committed: 5, atMs: clock.nowMs() });
  await clock.advanceSettling(50);
  assert.equal(roles.role, 'standby', 'a batch received before the Will is still being stored');
  // gw-a's claim comes back from the broker as claims do.
  replication.onPublish = (record) => replication.emit('leader', record);
  settle();
  // Leading with leases waits for its heartbeats to come back, on the clock the test moves.
  await waitFor('gw-a to lead', async () => {
    await clock.advanceSettling(10);
    return roles.role === 'primary' ? true : undefined;
  }, 5000, 1);
  const takeover = status().lastTakeover!;
  assert.deepEqual({ end: takeover.tail?.end, complete: takeover.complete, handoffCommitted: takeover.handoffCommitted }, { end: 'ended', complete: false, handoffCommitted: 5 });
});
