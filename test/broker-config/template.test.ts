// The broker-config templates: the renderer's rules, the render.ts command an installation uses, and the
// promise in the mosquitto configs that their persistence-and-limits block is the same in every variant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BROKER_CONFIG_DIR, renderTemplate, templateVariables } from '../../broker-config/index.ts';

const run = promisify(execFile);
const MOSQUITTO_DIR = join(BROKER_CONFIG_DIR, 'mosquitto');
const RENDER = join(BROKER_CONFIG_DIR, 'render.ts');

test('a placeholder takes the given value, else the default in the file', () => {
  const result = renderTemplate('listener ${PORT} ${BIND:-127.0.0.1}\nx ${EMPTY:-}|', { PORT: '1883' });
  assert.deepEqual(result, { ok: true, text: 'listener 1883 127.0.0.1\nx |' });
  assert.deepEqual(renderTemplate('${BIND:-127.0.0.1}', { BIND: '0.0.0.0' }), { ok: true, text: '0.0.0.0' });
});

test('every placeholder without a value or default is named, and a value with a line break is refused', () => {
  const result = renderTemplate('${A} ${B} ${A} ${C:-c}', {});
  assert.deepEqual(result, { ok: false, problems: ['${A} has no value and no default', '${B} has no value and no default'] });
  const smuggled = renderTemplate('password_file ${PASSWORD_FILE}', { PASSWORD_FILE: '/x\nallow_anonymous true' });
  assert.deepEqual(smuggled, { ok: false, problems: ['${PASSWORD_FILE}: the value contains a line break'] });
});

test('the broker syntax around placeholders passes through untouched', () => {
  const text = 'routes: [$ROUTES_VAR]\npath: "${DATA_DIR}" # ${lower} stays\n';
  assert.deepEqual(renderTemplate(text, { DATA_DIR: '/d' }), { ok: true, text: 'routes: [$ROUTES_VAR]\npath: "/d" # ${lower} stays\n' });
  assert.deepEqual(templateVariables('${A} ${B:-1} ${A:-2}'), [
    { name: 'A', defaultValue: undefined },
    { name: 'B', defaultValue: '1' },
  ]);
});

test('every mosquitto config carries the same persistence-and-limits block', async () => {
  const files = (await readdir(MOSQUITTO_DIR)).filter((name) => name.endsWith('.conf') && name !== 'acl.conf').sort();
  assert.deepEqual(files, ['auth.conf', 'single.conf', 'tls.conf']);
  const blocks = new Map<string, string>();
  for (const file of files) {
    const text = await readFile(join(MOSQUITTO_DIR, file), 'utf8');
    const match = /# ---- persistence and limits:[\s\S]*?# ---- end of the shared block ----/.exec(text);
    assert.ok(match, `${file} has no shared persistence-and-limits block`);
    blocks.set(file, match[0]);
  }
  const [first, ...rest] = [...blocks.entries()];
  for (const [file, block] of rest) assert.equal(block, first?.[1], `${file} differs from ${first?.[0]} in the shared block`);
  for (const directive of ['max_inflight_messages', 'max_queued_messages', 'max_queued_bytes', 'max_packet_size', 'autosave_interval', 'persistence true']) {
    assert.match(first?.[1] ?? '', new RegExp(`^${directive}`, 'm'), `shared block lacks ${directive}`);
  }
});

test('render.ts writes an installation config and names what is missing', async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', RENDER, 'mosquitto/single.conf', 'PORT=1883', 'DATA_DIR=/var/lib/mosquitto']);
  assert.match(stdout, /^listener 1883 127\.0\.0\.1$/m);
  assert.match(stdout, /^persistence_location \/var\/lib\/mosquitto\/$/m);
  assert.doesNotMatch(stdout, /\$\{/);
  const refused = await run(process.execPath, ['--import', 'tsx', RENDER, 'mosquitto/auth.conf', 'PORT=1883']).then(
    () => assert.fail('render.ts accepted a template with missing values'),
    (error: { code: number; stderr: string }) => error,
  );
  assert.equal(refused.code, 2);
  for (const name of ['DATA_DIR', 'PASSWORD_FILE', 'ACL_FILE']) assert.match(refused.stderr, new RegExp(`\\$\\{${name}\\} has no value`));
  const { stdout: listed } = await run(process.execPath, ['--import', 'tsx', RENDER, 'nats/node.conf', '--list']);
  assert.match(listed, /^NAME \(required\)$/m);
  assert.match(listed, /^MQTT_ACK_WAIT=10s$/m);
});

test('no placeholder hides in a comment, where it would be filled in and listed as a setting', async () => {
  for (const file of ['mosquitto/single.conf', 'mosquitto/auth.conf', 'mosquitto/tls.conf', 'nats/node.conf']) {
    const text = await readFile(join(BROKER_CONFIG_DIR, file), 'utf8');
    const commented = text.split('\n').filter((line) => /^\s*#/.test(line) && templateVariables(line).length > 0);
    assert.deepEqual(commented, [], file);
  }
});
