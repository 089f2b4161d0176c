// What a SIGHUP may change (agent/cli/reload.ts), on configs validated by the real schema: the log level and
// the power thresholds are applied; anything else changed (a broker list counts as one key) is named as
// needing a restart and stays, in the configuration in effect, as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig, type AgentConfig } from '../../agent/config/index.ts';
import { changedKeys, planReload } from '../../agent/cli/reload.ts';

function config(overrides: Record<string, unknown>): AgentConfig {
  const result = validateConfig({
    node: 'gw-a',
    group: 'reload',
    dataDir: '/var/lib/lastgasp',
    siblings: ['gw-b'],
    replication: { brokers: [{ url: 'mqtt://127.0.0.1:1883' }], insecureUnsigned: true },
    ...overrides,
  });
  assert.ok(result.ok, JSON.stringify(result));
  return result.config;
}

test('a reload applies the log level and power thresholds and names the rest as needing a restart', () => {
  const running = config({ logging: { level: 'info' }, power: { socPercentMin: 20 } });
  const next = config({
    logging: { level: 'debug' },
    power: { socPercentMin: 30, runtimeSMin: 90 },
    replication: { brokers: [{ url: 'mqtt://127.0.0.1:1884' }], insecureUnsigned: true },
    siblings: ['gw-b', 'gw-c'],
  });
  const plan = planReload(running, next);
  assert.deepEqual(plan.applied.map(({ key }) => key).sort(), ['logging.level', 'power.runtimeSMin', 'power.socPercentMin']);
  assert.deepEqual(plan.applied.find(({ key }) => key === 'power.socPercentMin'), { key: 'power.socPercentMin', from: 20, to: 30 });
  assert.deepEqual(plan.restartNeeded, ['replication.brokers', 'siblings']);
  assert.equal(plan.effective.logging.level, 'debug');
  assert.equal(plan.effective.power.socPercentMin, 30);
  assert.deepEqual(plan.effective.replication.brokers, running.replication.brokers);
  assert.deepEqual(plan.effective.siblings, running.siblings);
  // The running config is not touched; the next reload compares against the effective one.
  assert.equal(running.logging.level, 'info');
  assert.deepEqual(planReload(plan.effective, next).applied, []);
  assert.deepEqual(planReload(plan.effective, next).restartNeeded, ['replication.brokers', 'siblings']);
});

test('an unchanged file changes nothing', () => {
  const running = config({});
  assert.deepEqual(changedKeys(running, config({}), ''), []);
  const plan = planReload(running, config({}));
  assert.deepEqual([plan.applied, plan.restartNeeded], [[], []]);
});

test('a reload applies changed hooks (a new one, a changed timeout) without a restart', () => {
  const running = config({ hooks: { powerLost: ['/usr/local/bin/notify', 'lost'] } });
  const next = config({ hooks: { powerLost: ['/usr/local/bin/notify', 'mains'], handoff: ['/usr/local/bin/notify', 'handoff'], timeoutMs: 5000 } });
  const plan = planReload(running, next);
  assert.deepEqual(plan.applied.map(({ key }) => key).sort(), ['hooks.handoff', 'hooks.powerLost', 'hooks.timeoutMs']);
  assert.deepEqual(plan.restartNeeded, []);
  assert.deepEqual(plan.effective.hooks.handoff, ['/usr/local/bin/notify', 'handoff']);
  assert.equal(plan.effective.hooks.timeoutMs, 5000);
});
