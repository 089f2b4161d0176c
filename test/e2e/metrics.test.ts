// GET /metrics (issue 11, item 3): a real agent process on a real mosquitto, scraped on its API socket and on
// its loopback metrics port, the text parsed by a strict parser of the Prometheus text format, and the values
// compared with GET /v1/status taken just before and just after.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { OP_ENTRY } from '../../agent/app/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, writeAgentConfig } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir, waitFor } from '../support/ports.ts';
import { parsePrometheusText, valueOf } from '../support/prometheus-text.ts';

after(killAll);

function scrapeSocket(socketPath: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/metrics', headers: { host: 'localhost' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the parser refuses what a Prometheus server would refuse', () => {
  const bad = [
    'x 1', // no trailing line feed
    '# TYPE x counter\nx{a="1} 1\n', // unterminated label value
    '# TYPE x gauge\ny 1\nx 2\n# TYPE y gauge\n', // TYPE after samples
    'x 1\ny 1\nx 2\n', // a family interleaved
    'x{a="\\q"} 1\n', // an unknown escape
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
    '# TYPE c counter\nc -1\n', // a negative counter
    'x 1\nx 2\n', // a series twice
  ];
  for (const text of bad) assert.throws(() => parsePrometheusText(text), Error, JSON.stringify(text));
  const good = parsePrometheusText('# HELP h a \\\\ help\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n');
  assert.equal(good.get('h')?.help, 'a \\ help');
  assert.equal(valueOf(good, 'h_count'), 2);
});

test('GET /metrics on the API socket and on metrics.listen: valid text format, values as in /v1/status', async () => {
  const dir = await tempDir('metrics');
  const broker = await startMosquitto(dir.path);
  const metricsPort = await freePort();
  const socket = join(dir.path, 'api.sock');
  const config = await writeAgentConfig(dir.path, 'gw-a', {
    group: 'metrics',
    role: 'primary',
    siblings: ['gw-b'],
    api: { listen: `unix:${socket}` },
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    replication: { brokers: [{ url: broker.url }], durability: 'broker' },
  });
  const agent = await startAgent('gw-a', config.file, `unix:${socket}`);
  try {
    await agent.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    for (let i = 0; i < 5; i++) await agent.client.append(new Uint8Array([i]));
    await agent.client.batch([1, 2, 3].map((n) => ({ op: OP_ENTRY, data: new Uint8Array([n]) })));
    await waitFor('replicated', async () => ((await agent.client.status()).watermarks.replicated === 8 ? true : undefined), 20_000);

    const before = await agent.client.status();
    const scraped = await scrapeSocket(socket);
    const metrics = parsePrometheusText(scraped.body);
    const afterwards = await agent.client.status();
    assert.equal(scraped.status, 200);
    assert.match(scraped.type, /^text\/plain; version=0\.0\.4/);

    // Naming conventions: every counter ends in _total, no name carries "ms", units are base units.
    for (const family of metrics.values()) {
      assert.ok(family.name.startsWith('lastgasp_'), family.name);
      assert.ok(family.help !== undefined && family.help.length > 0, `${family.name} has HELP`);
      if (family.type === 'counter') assert.ok(family.name.endsWith('_total'), `${family.name} is a counter`);
      assert.doesNotMatch(family.name, /_ms(_|$)/, family.name);
    }
    // Values that only writes move are equal; those that heartbeats and checkpoints move lie between the two.
    const between = (name: string, labels: Record<string, string>, pick: (status: Record<string, any>) => number) => {
      const value = valueOf(metrics, name, labels);
      assert.ok(value !== undefined && value >= pick(before) && value <= pick(afterwards), `${name} = ${value}, status ${pick(before)}..${pick(afterwards)}`);
    };
    assert.equal(valueOf(metrics, 'lastgasp_log_committed_seq'), 8);
    assert.equal(valueOf(metrics, 'lastgasp_log_replicated_seq'), afterwards.watermarks.replicated);
    assert.equal(valueOf(metrics, 'lastgasp_log_appends_total'), afterwards.log.counters.appends);
    assert.equal(valueOf(metrics, 'lastgasp_log_batch_appends_total'), afterwards.log.counters.batchAppends);
    assert.equal(valueOf(metrics, 'lastgasp_publisher_entries_published_total'), afterwards.replication.publisher.entriesPublished);
    assert.equal(valueOf(metrics, 'lastgasp_epoch'), afterwards.epoch);
    assert.equal(valueOf(metrics, 'lastgasp_role', { role: 'primary' }), 1);
    assert.equal(valueOf(metrics, 'lastgasp_role', { role: 'standby' }), 0);
    assert.equal(valueOf(metrics, 'lastgasp_power_state', { state: 'ONLINE' }), 1);
    assert.equal(valueOf(metrics, 'lastgasp_info', { node: 'gw-a', group: 'metrics' }), 1);
    between('lastgasp_log_written_bytes_total', {}, (status) => status.log.counters.bytesWritten);
    between('lastgasp_log_syncs_total', {}, (status) => status.log.counters.syncs);
    between('lastgasp_api_requests_total', {}, (status) => status.api.apiRequests);
    between('lastgasp_link_publishes_total', { broker: broker.url }, (status) => status.replication.links[0].publishes);
    assert.equal(valueOf(metrics, 'lastgasp_publisher_window_max'), afterwards.replication.publisher.windowMax);
    assert.equal(valueOf(metrics, 'lastgasp_start_time_seconds'), afterwards.startedAtMs / 1000);
    // The histograms: one append observation per call (5 appends, 1 batch), and every committed entry went
    // through exactly one group commit.
    assert.equal(valueOf(metrics, 'lastgasp_append_duration_seconds_count'), 6);
    assert.equal(valueOf(metrics, 'lastgasp_log_batch_entries_sum'), 8);
    assert.equal(valueOf(metrics, 'lastgasp_flush_duration_seconds_count'), 0);

    // The loopback port serves the same families, without a token, and nothing else.
    const fromPort = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(fromPort.status, 200);
    const portMetrics = parsePrometheusText(await fromPort.text());
    assert.deepEqual([...portMetrics.keys()].sort(), [...metrics.keys()].sort());
    assert.equal(valueOf(portMetrics, 'lastgasp_log_appends_total'), afterwards.log.counters.appends);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/v1/status`)).status, 404);
  } finally {
    await agent.stop();
    await broker.stop();
    await dir.remove();
  }
});
