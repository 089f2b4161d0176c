// Config combinations that cannot be safe with silence takeover are refused with the numbers that would be.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../agent/config/index.ts';

const minimal = {
  node: 'gw-a',
  group: 'line-1',
  dataDir: '/var/lib/lastgasp',
  siblings: ['gw-b'],
  // Unsigned here so that each case shows only the refusal it is about (signing has its own tests).
  replication: { brokers: [{ url: 'mqtt://127.0.0.1:1883' }], insecureUnsigned: true },
};

function issues(takeover: Record<string, unknown>, replication: Record<string, unknown> = {}): string[] {
  const result = validateConfig({ ...minimal, takeover, replication: { ...minimal.replication, ...replication } });
  return result.ok ? [] : result.issues.map((issue) => `${issue.path}: ${issue.message}`);
}

test('silence takeover no longer than the default heartbeat is refused (it let a standby take over a live primary)', () => {
  const found = issues({ silenceMs: 2000 });
  assert.equal(found.length, 1);
  assert.match(found[0]!, /^takeover\.silenceMs: gives a lease of -2200 ms, shorter than three heartbeats .* at least 11112/);
  assert.deepEqual(issues({ silenceMs: 11_112 }), []);
});

test('an explicit lease must end, with margin, before a standby may act', () => {
  assert.match(issues({ silenceMs: 30_000, leaseMs: 26_000 })[0]!, /^takeover\.silenceMs: 30000 is too short for takeover\.leaseMs 26000: .* at least 33334/);
  assert.deepEqual(issues({ silenceMs: 30_000, leaseMs: 23_000 }), []);
  assert.match(issues({ silenceMs: 30_000, leaseMs: 5000 })[0]!, /^takeover\.leaseMs: gives a lease of 5000 ms, shorter than three heartbeats/);
  assert.match(issues({ leaseMs: 5000 })[0]!, /^takeover\.leaseMs: is set but takeover\.silenceMs is 0/);
});

test('with independent brokers, silence takeover needs a majority quorum', () => {
  const brokers = [{ url: 'mqtt://127.0.0.1:1883' }, { url: 'mqtt://127.0.0.1:1884' }, { url: 'mqtt://127.0.0.1:1885' }, { url: 'mqtt://127.0.0.1:1886' }];
  assert.match(issues({ silenceMs: 30_000 }, { mode: 'independent', brokers, quorum: 2 })[0]!, /^replication\.quorum: 2 of 4 brokers is not a majority/);
  assert.deepEqual(issues({ silenceMs: 30_000 }, { mode: 'independent', brokers, quorum: 3 }), []);
  assert.deepEqual(issues({}, { mode: 'independent', brokers, quorum: 2 }), [], 'without silence takeover a minority quorum is only weaker durability');
});
