// Batched key-value reads (POST /v1/kv/get, ApiClient.getMany) on a real agent process: many values in one
// request at one applied seq, absent keys reported as absent, a bad list refused with a typed error.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { isLastgaspError } from '../../agent/util/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, writeAgentConfig } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';

after(killAll);

test('POST /v1/kv/get: many values in one request, absent keys absent, a bad key list refused', async () => {
  const dir = await tempDir('e2e-kv-get');
  const broker = await startMosquitto(dir.path);
  const config = await writeAgentConfig(dir.path, 'gw-a', { group: 'kvget', role: 'primary', replication: { brokers: [{ url: broker.url }], durability: 'broker' } });
  const agent = await startAgent('gw-a', config.file, config.api);
  try {
    await agent.client.put('boiler/temp', '21.5');
    await agent.client.put('boiler/state', new Uint8Array([0, 255, 7]));
    const last = await agent.client.put('ключ', 'значение');
    await agent.client.delete('boiler/state');
    const { values, appliedSeq } = await agent.client.getMany(['boiler/temp', 'boiler/state', 'ключ', 'nowhere']);
    assert.ok(appliedSeq >= last.seq + 1, 'read after every write it follows');
    assert.equal(new TextDecoder().decode(values.get('boiler/temp')), '21.5');
    assert.equal(values.get('boiler/state'), undefined, 'deleted');
    assert.equal(new TextDecoder().decode(values.get('ключ')), 'значение');
    assert.equal(values.get('nowhere'), undefined);
    assert.equal(values.size, 4);
    for (const keys of [Array.from({ length: 1001 }, (_, index) => `k${index}`), [''], ['x'.repeat(513)]]) {
      await assert.rejects(agent.client.getMany(keys), (error: unknown) => isLastgaspError(error, 'BAD_REQUEST'));
    }
  } finally {
    await agent.stop();
    await broker.stop();
    await dir.remove();
  }
});
