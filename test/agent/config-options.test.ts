// What a config means to each part (agent/config/options.ts): a minimal config with its defaults, and one
// that sets the replication mode, silence takeover, the energy rule and hooks, mapped to the options of the
// log, replication, the roles, the supervisor and the hooks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hookOptions, kvSnapshotOptions, leaseMsFor, logOptions, replicationOptions, roleOptions, supervisorOptions, validateConfig, type AgentConfig } from '../../agent/config/index.ts';

const signing = { keyFile: '/etc/lastgasp/gw-a.key', publicKeys: { 'gw-a': '11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=', 'gw-b': '/etc/lastgasp/gw-b.pub' } };

const minimal = {
  node: 'gw-a',
  group: 'line-1',
  dataDir: '/var/lib/lastgasp',
  siblings: ['gw-b'],
  replication: { brokers: [{ url: 'mqtt://127.0.0.1:1883' }], signing },
};

function valid(raw: unknown): AgentConfig {
  const result = validateConfig(raw);
  assert.ok(result.ok, result.ok ? '' : result.issues.map((issue) => `${issue.path}: ${issue.message}`).join('; '));
  return result.config;
}

test('a minimal config: the parts get the schema defaults, and the files sit under dataDir', () => {
  const config = valid(minimal);
  const log = logOptions(config);
  assert.equal(log.dir, '/var/lib/lastgasp/log');
  assert.equal(log.segmentBytes, 64 * 1024 * 1024);
  assert.equal(log.fullPolicy, config.log.fullPolicy);
  assert.deepEqual(kvSnapshotOptions(config), { snapshotEveryEntries: 100_000, snapshotEveryBytes: 256 * 1024 * 1024 }, 'a snapshot also every quarter of the 1 GiB quota');
  assert.deepEqual(kvSnapshotOptions(valid({ ...minimal, log: { snapshotEveryEntries: 0 } })), { snapshotEveryEntries: 0, snapshotEveryBytes: 0 }, '0: only at a clean stop');

  const replication = replicationOptions(config);
  assert.deepEqual(replication.brokers, ['mqtt://127.0.0.1:1883'], 'the broker URLs, without their other fields');
  assert.equal(replication.durability, 'replica');
  assert.equal(replication.counterFile, '/var/lib/lastgasp/wire-counter.json');
  assert.deepEqual(replication.siblings, ['gw-b']);
  assert.equal(replication.prepareAheadBytes, 16 * 1024 * 1024, 'the brownout tail is prepared ahead within 16 MiB');
  assert.equal(replicationOptions(valid({ ...minimal, replication: { ...minimal.replication, prepareAheadBytes: 0 } })).prepareAheadBytes, 0, '0: nothing prepared');

  const roles = roleOptions(config);
  assert.equal(roles.configuredRole, 'standby');
  assert.equal(roles.leaderFile, '/var/lib/lastgasp/leader.json');
  assert.equal(roles.silenceMs, 0);
  assert.equal(roles.leaseMs, 0, 'no silence takeover, no lease');

  const supervisor = supervisorOptions(config.power);
  assert.equal(supervisor.flushBudgetMs, config.power.flushBudgetMs);
  assert.equal(supervisor.thresholds.energyMarginMs, 2000, 'the energy rule is on by default, with its margin');

  assert.deepEqual(hookOptions(config.hooks), { commands: {}, shell: false, timeoutMs: config.hooks.timeoutMs });
});

test('a config with a cluster, silence takeover, the energy rule off and hooks', () => {
  const config = valid({
    ...minimal,
    role: 'primary',
    replication: { ...minimal.replication, brokers: [{ url: 'mqtt://n1:1883' }, { url: 'mqtt://n2:1883' }], mode: 'cluster', durability: 'broker', heartbeatMs: 500 },
    takeover: { silenceMs: 10_000 },
    power: { energyAware: false, socPercentMin: 30 },
    hooks: { powerLost: ['/usr/bin/logger', 'power lost'], shell: false },
  });
  const replication = replicationOptions(config);
  assert.deepEqual(replication.brokers, ['mqtt://n1:1883', 'mqtt://n2:1883']);
  assert.equal(replication.mode, 'cluster');
  assert.equal(replication.durability, 'broker');

  const roles = roleOptions(config);
  assert.equal(roles.configuredRole, 'primary');
  assert.equal(roles.heartbeatMs, 500);
  // 0.9 × 10,000 ms less two heartbeats of 500 ms (takeover/LEADERSHIP.md).
  assert.equal(roles.leaseMs, 8000);
  assert.equal(leaseMsFor(valid({ ...minimal, takeover: { silenceMs: 20_000, leaseMs: 12_000 } })), 12_000, 'a lease set in the config is kept');

  const thresholds = supervisorOptions(config.power).thresholds;
  assert.equal(thresholds.socPercentMin, 30);
  assert.equal(thresholds.energyMarginMs, undefined, 'thresholds only: the energy rule is left out');
  assert.equal(thresholds.batteryMah, undefined);

  assert.deepEqual(hookOptions(config.hooks).commands, { powerLost: ['/usr/bin/logger', 'power lost'] });
});
