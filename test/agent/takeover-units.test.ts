// The takeover parts with a fake clock: epoch ownership, heartbeat echoes and the lease they give, and the
// standby's silence watch (late ticks after a pause, hearing its own heartbeats, the probe, the election),
// which leader records a node follows, and how long a successor follows the tail behind an incomplete handoff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EPOCH_MAX, epochOwner, groupMembers, nextOwnedEpoch } from '../../agent/takeover/epochs.ts';
import { HandoffTail, TAIL_GRACE_MS } from '../../agent/takeover/handoff-tail.ts';
import { Heartbeats } from '../../agent/takeover/heartbeats.ts';
import { judgeLeaderRecord } from '../../agent/takeover/leader-rules.ts';
import { Lease } from '../../agent/takeover/lease.ts';
import { SilenceWatch } from '../../agent/takeover/silence-watch.ts';
import { silentLogger } from '../../agent/util/index.ts';
import type { LeaderMessage, StateMessage } from '../../agent/replication/index.ts';
import { FakeClock, settle } from '../support/fake-clock.ts';

test('every epoch has one owner, and each node takes the next of its own above the floor', () => {
  const members = groupMembers('gw-b', ['gw-c', 'gw-a']);
  assert.deepEqual(members, ['gw-a', 'gw-b', 'gw-c']);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((epoch) => epochOwner(members, epoch)), ['gw-a', 'gw-b', 'gw-c', 'gw-a', 'gw-b', 'gw-c']);
  assert.equal(epochOwner(members, 0), undefined);
  assert.equal(epochOwner(members, EPOCH_MAX + 1), undefined);
  assert.equal(nextOwnedEpoch(members, 'gw-a', 0), 1);
  assert.equal(nextOwnedEpoch(members, 'gw-a', 1), 4);
  assert.equal(nextOwnedEpoch(members, 'gw-c', 1), 3);
  assert.equal(nextOwnedEpoch(members, 'gw-b', 7), 8);
  assert.equal(nextOwnedEpoch(members, 'gw-x', 7), undefined);
  // Two nodes deciding from the same floor never pick the same epoch.
  for (let floor = 0; floor < 50; floor++) {
    const picks: Array<number | undefined> = members.map((node) => nextOwnedEpoch(members, node, floor));
    assert.equal(new Set(picks).size, members.length);
    for (const [index, epoch] of picks.entries()) assert.equal(epochOwner(members, epoch!), members[index]);
  }
  assert.equal(nextOwnedEpoch(['gw-a', 'gw-b'], 'gw-a', EPOCH_MAX - 1), EPOCH_MAX);
  assert.equal(nextOwnedEpoch(['gw-a', 'gw-b'], 'gw-b', EPOCH_MAX - 1), undefined, '32-bit epochs run out rather than wrap');
});

function heartbeats(clock: FakeClock, quorum = 1) {
  const sent: number[] = [];
  const beats = new Heartbeats({ clock, heartbeatMs: 100, quorum, send: async (atMs) => void sent.push(atMs), logger: silentLogger });
  return { beats, sent };
}

test('a lease runs from the send time of the newest heartbeat a quorum echoed; late echoes prove less', () => {
  const clock = new FakeClock();
  const { beats, sent } = heartbeats(clock, 2);
  beats.start();
  const sentAt = clock.monotonicMs();
  clock.advance(30);
  beats.onEcho(sent[0]!, 0);
  assert.equal(beats.echoedSentMs, -Infinity, 'one broker of a quorum of two is not enough');
  beats.onEcho(sent[0]!, 0);
  assert.equal(beats.echoedSentMs, -Infinity, 'the same broker twice is not two');
  beats.onEcho(sent[0]!, 1);
  assert.equal(beats.echoedSentMs, sentAt);
  clock.advance(100);
  assert.equal(sent.length, 2);
  clock.advance(500);
  beats.onEcho(sent[1]!, 0);
  beats.onEcho(sent[1]!, 1);
  assert.equal(beats.echoedSentMs, sentAt + 100, 'an echo that took 500 ms renews only from when it was sent');
  clock.advance(1000);
  beats.onEcho(sent[2]!, 0);
  beats.onEcho(sent[2]!, 1);
  assert.equal(beats.echoedSentMs, sentAt + 100, 'a heartbeat eight intervals old is forgotten: its echo renews nothing');
  beats.onEcho(123, 0);
  beats.onEcho(123, 1);
  assert.equal(beats.echoedSentMs, sentAt + 100, 'an echo of nothing this life sent (a retained record of an earlier life) counts for nothing');
  beats.stop();
});

test('a lease is held until leaseMs after the newest echoed heartbeat was sent, and its watch says when it ran out', () => {
  const clock = new FakeClock();
  const { beats, sent } = heartbeats(clock, 1);
  const lease = new Lease({ leaseMs: 1000, heartbeatMs: 100, heartbeats: beats, clock });
  assert.equal(lease.held, false, 'no echo yet: no lease');
  assert.equal(lease.roundTripMs(), 1000, 'two heartbeats of 100 ms are under the 1 s floor of a round trip');
  beats.start();
  const sentAt = clock.monotonicMs();
  clock.advance(40);
  beats.onEcho(sent[0]!, 0);
  assert.equal(lease.held, true);
  assert.equal(lease.remainingMs, 960, 'the lease runs from the send, not from the echo');
  beats.stop();
  const lostAt: number[] = [];
  lease.watch(() => true, () => lostAt.push(clock.monotonicMs()));
  clock.advance(2000);
  // The watch checks every heartbeatMs / 4 = 25 ms from 40 ms: the first check at or past 1,000 ms is 1,015 ms.
  assert.deepEqual(lostAt.map((atMs) => atMs - sentAt), [1015]);
  assert.equal(lease.held, false);
  assert.equal(lease.remainingMs, 0);
});

test('hearing one\'s own heartbeats: a gap longer than two and a half intervals restarts the window', () => {
  const clock = new FakeClock();
  const { beats, sent } = heartbeats(clock);
  beats.start();
  assert.equal(beats.hearingSinceMs(), Infinity);
  beats.onEcho(sent[0]!, 0);
  const since = clock.monotonicMs();
  for (let index = 1; index <= 5; index++) {
    clock.advance(100);
    beats.onEcho(sent[index]!, 0);
  }
  assert.equal(beats.hearingSinceMs(), since);
  clock.advance(300);
  assert.equal(beats.hearingSinceMs(), Infinity, 'three intervals without an echo: not hearing');
  beats.onEcho(sent[sent.length - 1]!, 0);
  assert.equal(beats.hearingSinceMs(), clock.monotonicMs(), 'heard again: the window starts now');
  beats.stop();
});

function state(node: string, role: StateMessage['role'], committed = 0): StateMessage {
  return { group: 'g', node, role, state: 'online', epoch: 1, committed, atMs: 0 };
}

function watch(clock: FakeClock, node: string, committed: () => number) {
  const { beats, sent } = heartbeats(clock);
  const decisions: number[] = [];
  // Taking over stops the watch, as RoleManager does when the node becomes primary.
  const silence: SilenceWatch = new SilenceWatch({
    node,
    silenceMs: 1000,
    heartbeatMs: 100,
    heartbeats: beats,
    committed,
    onSilent: async (silentMs) => {
      decisions.push(silentMs);
      silence.stop();
    },
    clock,
    logger: silentLogger,
  });
  /** Echo every heartbeat sent so far (this node hears the brokers). */
  const hear = () => {
    for (const atMs of sent.splice(0)) beats.onEcho(atMs, 0);
  };
  beats.start();
  hear();
  return { beats, silence, decisions, hear };
}

async function run(clock: FakeClock, ms: number, step: () => void): Promise<void> {
  for (let elapsed = 0; elapsed < ms; elapsed += 50) {
    clock.advance(50);
    step();
    await settle();
  }
}

test('the standby acts on silence only while it hears its own heartbeats, and after a probe round trip', async () => {
  const clock = new FakeClock();
  const { silence, decisions, hear } = watch(clock, 'gw-b', () => 10);
  silence.watch('gw-a');
  await run(clock, 900, () => {
    hear();
    silence.onState(state('gw-a', 'primary'));
  });
  await run(clock, 900, hear);
  assert.deepEqual(decisions, [], 'the silence is shorter than silenceMs');
  await run(clock, 400, hear);
  assert.equal(decisions.length, 1);
  assert.ok(decisions[0]! >= 1000);
  silence.stop();
});

test('a standby that does not hear its own heartbeats (cut from the brokers) never counts silence', async () => {
  const clock = new FakeClock();
  const { silence, decisions } = watch(clock, 'gw-b', () => 10);
  silence.watch('gw-a');
  await run(clock, 5000, () => undefined);
  assert.deepEqual(decisions, []);
  silence.stop();
});

test('a paused standby: the tick that fires late is skipped, and the heartbeats that piled up are read first', async () => {
  const clock = new FakeClock();
  const { silence, decisions, hear } = watch(clock, 'gw-b', () => 10);
  silence.watch('gw-a');
  await run(clock, 500, () => {
    hear();
    silence.onState(state('gw-a', 'primary'));
  });
  clock.jump(5000); // SIGSTOP for 5 s: no timer ran
  clock.advance(0); // SIGCONT: the overdue tick fires first...
  await settle();
  silence.onState(state('gw-a', 'primary')); // ...then the socket is read: the primary was alive all along
  hear();
  await run(clock, 500, () => {
    hear();
    silence.onState(state('gw-a', 'primary'));
  });
  assert.deepEqual(decisions, []);
  assert.ok(silence.lateTicks >= 1);
  silence.stop();
});

test('any node that says it is primary resets the silence, not only the one followed', async () => {
  const clock = new FakeClock();
  const { silence, decisions, hear } = watch(clock, 'gw-c', () => 10);
  silence.watch('gw-b');
  await run(clock, 3000, () => {
    hear();
    silence.onState(state('gw-a', 'primary'));
  });
  assert.deepEqual(decisions, []);
  silence.stop();
});

test('the election: the most caught-up standby takes over, ties go to the smallest name, and the next in line steps in if the winner falls silent', async () => {
  const clock = new FakeClock();
  const behind = watch(clock, 'gw-b', () => 90);
  const ahead = watch(clock, 'gw-c', () => 100);
  behind.silence.watch('gw-a');
  ahead.silence.watch('gw-a');
  await run(clock, 2000, () => {
    behind.hear();
    ahead.hear();
    behind.silence.onState(state('gw-c', 'standby', 100));
    ahead.silence.onState(state('gw-b', 'standby', 90));
  });
  assert.equal(behind.decisions.length, 0);
  assert.equal(ahead.decisions.length, 1);
  // gw-c falls silent too: after the silence window gw-b no longer counts it.
  await run(clock, 1500, () => behind.hear());
  assert.equal(behind.decisions.length, 1);
  behind.silence.stop();
  ahead.silence.stop();

  const tieClock = new FakeClock();
  const x = watch(tieClock, 'gw-x', () => 5);
  x.silence.watch('gw-a');
  await run(tieClock, 2000, () => {
    x.hear();
    x.silence.onState(state('gw-m', 'standby', 5));
  });
  assert.equal(x.decisions.length, 0, 'gw-m has the same seq and the smaller name');
  x.silence.stop();
});

test('a leader record is followed only if it knows the floor, lies on or above it, belongs to its sender and is not a stranger in this node\'s name', () => {
  const members = groupMembers('gw-a', ['gw-b', 'gw-c']);
  const known: LeaderMessage = { group: 'g', kind: 'leader', epoch: 4, node: 'gw-a', since: 10, atMs: 1 };
  const view = { node: 'gw-a', members, floor: 4, known };
  const record = (fields: Partial<LeaderMessage>): LeaderMessage => ({ group: 'g', kind: 'leader', epoch: 5, node: 'gw-b', since: 20, atMs: 2, ...fields });
  const verdict = (fields: Partial<LeaderMessage>) => {
    const result = judgeLeaderRecord(record(fields), view);
    return result.follow ? 'follow' : result.reason;
  };
  assert.equal(verdict({ prev: 4 }), 'follow', 'gw-b claims its own epoch 5 knowing the floor 4');
  assert.equal(verdict({ prev: 3 }), 'superseded-claim', 'a claim made without knowing epoch 4');
  assert.equal(verdict({ epoch: 3, node: 'gw-c' }), 'below-floor');
  assert.equal(verdict({ epoch: 4 }), 'conflicting', 'epoch 4 is gw-a\'s already');
  assert.equal(verdict({ epoch: 6 }), 'not-owner', 'epoch 6 is gw-c\'s');
  assert.equal(verdict({ epoch: 7, node: 'gw-a' }), 'not-ours', 'gw-a never wrote epoch 7 in this life');
  assert.equal(verdict({ epoch: 4, node: 'gw-a', atMs: 3 }), 'follow', 'its own saved record, seen again');
  assert.equal(verdict({ kind: 'handoff', epoch: 4, node: 'gw-a', lastSeq: 12 }), 'follow', 'its own handoff in the epoch it leads');
});

test('the tail behind an incomplete handoff ends when all of it arrived, when the old primary\'s last word came after the record, or when its time ran out', async () => {
  const handoff: LeaderMessage = { group: 'g', kind: 'handoff', epoch: 1, node: 'gw-a', to: 'gw-b', lastSeq: 100, committed: 160, complete: false, tailMs: 400, atMs: 0 };
  assert.ok(HandoffTail.announced(handoff));
  assert.ok(!HandoffTail.announced({ ...handoff, complete: true, lastSeq: 160 }), 'a complete handoff has no tail to wait for');
  assert.ok(!HandoffTail.announced({ ...handoff, tailMs: undefined }), 'an old primary that announces none (an older version) is taken at its word');
  const offline: StateMessage = { ...state('gw-a', 'unknown'), state: 'offline' };

  // All of it arrives in the tail: the wait ends at once.
  let clock = new FakeClock();
  let tail = new HandoffTail(clock);
  let committed = 120;
  let ended: string | undefined;
  void tail.wait(handoff, clock.monotonicMs(), () => committed).then((end) => (ended = end));
  await clock.advanceSettling(100);
  assert.equal(ended, undefined, 'still following a tail that is coming in');
  committed = 160;
  await clock.advanceSettling(10);
  assert.equal(ended, 'complete');

  // The old primary's Will (or its handed-off state record) after the record: nothing more comes.
  clock = new FakeClock();
  tail = new HandoffTail(clock);
  tail.onState(offline);
  clock.advance(5);
  ended = undefined;
  void tail.wait(handoff, clock.monotonicMs(), () => 120).then((end) => (ended = end));
  await clock.advanceSettling(50);
  assert.equal(ended, undefined, 'a Will from before the record says nothing about the tail behind it');
  tail.onState({ ...state('gw-c', 'standby'), state: 'offline' });
  await clock.advanceSettling(20);
  assert.equal(ended, undefined, 'another node going offline says nothing about gw-a\'s tail');
  tail.onState({ ...offline, state: 'handed-off' });
  await clock.advanceSettling(10);
  assert.equal(ended, 'ended');

  // The power went and no word came: tailMs and the grace after the record arrived.
  clock = new FakeClock();
  tail = new HandoffTail(clock);
  ended = undefined;
  void tail.wait(handoff, clock.monotonicMs(), () => 120).then((end) => (ended = end));
  await clock.advanceSettling(400 + TAIL_GRACE_MS - 10);
  assert.equal(ended, undefined);
  await clock.advanceSettling(10);
  assert.equal(ended, 'timeout');
});
