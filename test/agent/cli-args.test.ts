// A CLI that never surprises (issue 11, item 5): every command answers --help with exit 0 and its usage,
// refuses a misspelt option with exit 64 naming the option it resembles, and the config comes from the
// file, its drop-ins and LASTGASP_* variables, in that order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../../agent/cli/main.ts';
import { describeConfig, envKeys, loadConfig } from '../../agent/config/index.ts';
import { createFlashLog } from '../../agent/log/index.ts';
import { closest } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (line: string) => void out.push(line), stderr: (line: string) => void err.push(line) }, out, err };
}

/** Every command and subcommand; each with a misspelt option and the option it should suggest. */
const COMMANDS: Array<{ argv: string[]; typo: string; suggests?: string }> = [
  { argv: ['run'], typo: '--confg', suggests: '--config' },
  { argv: ['status'], typo: '--jsn', suggests: '--json' },
  { argv: ['config', 'check', 'agent.yaml'], typo: '--jsno', suggests: '--json' },
  { argv: ['config', 'defaults'], typo: '--bogus' },
  { argv: ['bms-sim'], typo: '--protocl', suggests: '--protocol' },
  { argv: ['bms', 'probe', '/dev/null'], typo: '--protocl', suggests: '--protocol' },
  { argv: ['bms', 'decode', '00'], typo: '--protocl', suggests: '--protocol' },
  { argv: ['log', 'inspect', '/nonexistent'], typo: '--jsn', suggests: '--json' },
  { argv: ['log', 'verify'], typo: '--confi', suggests: '--config' },
  { argv: ['keys', 'generate'], typo: '--nod', suggests: '--node' },
  { argv: ['keys', 'show', 'x.pub'], typo: '--jsn', suggests: '--json' },
  { argv: ['quarantine', 'list', '/nonexistent'], typo: '--jsn', suggests: '--json' },
  { argv: ['quarantine', 'replay', '/nonexistent'], typo: '--token-fil', suggests: '--token-file' },
  { argv: ['watch'], typo: '--grop', suggests: '--group' },
  { argv: ['version'], typo: '--bogus' },
  { argv: ['demo'], typo: '--jsn', suggests: '--json' },
];

test('every command: --help exits 0 with its usage on stdout', async () => {
  const helps = [[], ['config'], ['keys'], ['bms'], ['log'], ['quarantine'], ...COMMANDS.map((command) => command.argv)];
  for (const argv of helps) {
    for (const flag of ['--help', '-h']) {
      const { io, out, err } = capture();
      const code = await main([...argv, flag], io);
      assert.equal(code, 0, `${[...argv, flag].join(' ')}: exit ${code} ${err.join(' ')}`);
      assert.match(out.join('\n'), /usage/i, `${argv.join(' ')} ${flag} prints its usage`);
    }
  }
});

test('every command: a misspelt option exits 64 and names the closest known one', async () => {
  for (const { argv, typo, suggests } of COMMANDS) {
    const { io, err } = capture();
    const code = await main([...argv, typo], io);
    const text = err.join('\n');
    assert.equal(code, 64, `${[...argv, typo].join(' ')}: exit ${code}: ${text}`);
    assert.match(text, new RegExp(`unknown option ${typo}`), text);
    if (suggests) assert.ok(text.includes(`did you mean ${suggests}?`), `${argv.join(' ')} ${typo}: ${text}`);
  }
});

test('values are validated: a flag with a value, an option without one, a bad choice, an extra argument', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['status', '--json=yes'], /--json is a flag and takes no value/],
    [['run', '--config'], /--config needs a value/],
    [['run', '--config', 'x.yaml', '--log-level', 'loud'], /--log-level loud: expected debug, info, warn, error/],
    [['watch', '--broker', 'mqtt://127.0.0.1:1', '--count', 'many'], /--count many: expected an integer/],
    [['quarantine', 'export', '/x', '--format', 'xml'], /--format xml: expected jsonl, raw/],
    [['status', 'extra'], /unexpected argument "extra"/],
    [['demo', '--steady', 'lots'], /--steady lots: expected an integer/],
    [['log', 'inspect', '/a', '--config', 'b.yaml'], /give DIR .* or --config FILE, one of them/],
    [['config', 'chek', 'x'], /unknown command "chek" \(did you mean check\?\)/],
    [['sttus'], /unknown command "sttus" \(did you mean "status"\?\)/],
  ];
  for (const [argv, pattern] of cases) {
    const { io, err } = capture();
    assert.equal(await main(argv, io), 64, argv.join(' '));
    assert.match(err.join('\n'), pattern, argv.join(' '));
  }
  assert.equal(closest('jsn', ['json', 'config']), 'json');
  assert.equal(closest('frobnicate', ['json', 'config']), undefined);
});

test('config: drop-ins override the file, LASTGASP_* variables override both; config defaults names every variable', async () => {
  const dir = await tempDir('config-sources');
  try {
    await mkdir(join(dir.path, 'conf.d'));
    const file = join(dir.path, 'agent.yaml');
    await writeFile(
      file,
      'node: gw-a\ngroup: line-1\ndataDir: /data\nsiblings: [gw-b]\ninclude: conf.d/*.yaml\npower:\n  socPercentMin: 20\n  flushBudgetMs: 8000\nreplication:\n  insecureUnsigned: true\n  brokers:\n    - url: mqtt://10.0.0.1:1883\n',
    );
    // Merged in name order: 20-later.yaml wins over 10-early.yaml; a file not matching *.yaml is not read.
    await writeFile(join(dir.path, 'conf.d', '10-early.yaml'), 'power:\n  socPercentMin: 30\nlogging:\n  level: debug\n');
    await writeFile(join(dir.path, 'conf.d', '20-later.yaml'), 'power:\n  socPercentMin: 35\n');
    await writeFile(join(dir.path, 'conf.d', 'notes.txt'), 'power: [broken\n');
    const fromFiles = await loadConfig(file, {});
    assert.equal(fromFiles.power.socPercentMin, 35);
    assert.equal(fromFiles.power.flushBudgetMs, 8000, 'keys the drop-ins do not name stay as the file says');
    assert.equal(fromFiles.logging.level, 'debug');

    const env = {
      LASTGASP_POWER__SOC_PERCENT_MIN: '42',
      LASTGASP_API__SOCKET_MODE: '0640',
      LASTGASP_REPLICATION__BROKERS: '[{url: "mqtt://10.0.0.9:1883"}]',
      LASTGASP_EPOCH: '7',
    };
    const overridden = await loadConfig(file, env);
    assert.equal(overridden.power.socPercentMin, 42);
    assert.equal(overridden.api.socketMode, '0640', 'a mode stays text, not the number YAML would read');
    assert.deepEqual(overridden.replication.brokers.map((broker) => broker.url), ['mqtt://10.0.0.9:1883']);
    await assert.rejects(loadConfig(file, { LASTGASP_POWER__SOC_PERCENT_MIN: '140' }), /power\.socPercentMin: 140 is out of range/);

    const { io, out, err } = capture();
    const previous = { ...process.env };
    Object.assign(process.env, env);
    try {
      assert.equal(await main(['config', 'check', file, '--json'], io), 0, err.join('\n'));
    } finally {
      for (const name of Object.keys(env)) if (previous[name] === undefined) delete process.env[name];
    }
    const report = JSON.parse(out[0]!) as { files: string[]; env: Array<{ name: string; path: string }>; envUnused: string[] };
    assert.deepEqual(report.files.map((name) => name.slice(dir.path.length)), ['/agent.yaml', '/conf.d/10-early.yaml', '/conf.d/20-later.yaml']);
    assert.ok(report.env.some((applied) => applied.name === 'LASTGASP_POWER__SOC_PERCENT_MIN' && applied.path === 'power.socPercentMin'));
    assert.ok(report.envUnused.includes('LASTGASP_EPOCH'), 'a variable that names no key is listed, not applied');

    const defaults = describeConfig();
    for (const key of envKeys()) assert.ok(defaults.includes(`(env ${key.name})`), `config defaults names ${key.name}`);
    assert.match(defaults, /\(env LASTGASP_POWER__SOC_PERCENT_MIN\)/);
    assert.match(defaults, /include: \["conf\.d\/\*\.yaml"\]/);
  } finally {
    await dir.remove();
  }
});

test('config check reports every problem at once: schema, a missing secret file and an unset password variable', async () => {
  const dir = await tempDir('config-all');
  try {
    const file = join(dir.path, 'agent.yaml');
    await writeFile(file, `node: gw-a\ngroup: line-1\ndataDir: ${dir.path}\nsiblings: [gw-b]\nreplication:\n  hmacKeyFile: ${dir.path}/missing.key\n  passwordEnv: LASTGASP_TEST_UNSET_PASSWORD\n  brokers:\n    - url: mqtt://10.0.0.1:1883\n`);
    const { io, err } = capture();
    assert.equal(await main(['config', 'check', file], io), 78);
    const text = err.join('\n');
    assert.match(text, /replication\.hmacKeyFile: cannot read .*missing\.key/);
    assert.match(text, /replication\.passwordEnv: environment variable LASTGASP_TEST_UNSET_PASSWORD is not set/);
    assert.match(text, /2 problem\(s\)/);
    await writeFile(file, 'node: "gw a"\ngroup: line-1\n');
    const schema = capture();
    assert.equal(await main(['config', 'check', file], schema.io), 78);
    assert.match(schema.err.join('\n'), /node: .*\n.*dataDir: is required[\s\S]*replication: is required/);
  } finally {
    await dir.remove();
  }
});

test('log inspect|verify read the log of an agent\'s dataDir (in DATA_DIR/log), given as a directory or by --config', async () => {
  const dir = await tempDir('log-datadir');
  try {
    const dataDir = join(dir.path, 'data');
    const log = createFlashLog({ dir: join(dataDir, 'log'), segmentBytes: 64 * 1024 });
    await log.open();
    for (let i = 0; i < 3; i++) await log.append(new Uint8Array([i]));
    await log.close();
    const file = join(dir.path, 'agent.yaml');
    await writeFile(file, `node: gw-a\ngroup: line-1\ndataDir: ${dataDir}\nsiblings: [gw-b]\nreplication:\n  insecureUnsigned: true\n  brokers:\n    - url: mqtt://10.0.0.1:1883\n`);
    for (const target of [[dataDir], [join(dataDir, 'log')], ['--config', file]]) {
      const inspect = capture();
      assert.equal(await main(['log', 'inspect', ...target, '--json'], inspect.io), 0, inspect.err.join('\n'));
      assert.equal((JSON.parse(inspect.out[0]!) as { committed: number }).committed, 3, target.join(' '));
      const verify = capture();
      assert.equal(await main(['log', 'verify', ...target], verify.io), 0, verify.err.join('\n'));
      assert.match(verify.out[0]!, /^OK: .*: 3 entries/);
    }
  } finally {
    await dir.remove();
  }
});
