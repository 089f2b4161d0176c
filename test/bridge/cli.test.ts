// The user commands: `lastgasp bms decode` on the real captures, `lastgasp bms probe` finding which protocol
// the simulator speaks on a pty, and the simulator's command line (help, refusals naming the option or the
// scenario field, a YAML scenario whose steps run).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bmsMain, bmsSimMain, type Io } from '../../firmware-bridge/cli/index.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir } from '../support/ports.ts';
import { startSim } from './helpers.ts';
import { toHex } from './hex.ts';
import * as captures from '../fixtures/bms-captures.ts';

after(killAll);

function captureIo(): Io & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (line) => out.push(line), stderr: (line) => err.push(line) };
}

async function decode(protocol: string, bytes: Uint8Array): Promise<{ code: number; results: Array<Record<string, unknown>> }> {
  const io = captureIo();
  const code = await bmsMain(['decode', '--protocol', protocol, toHex(bytes)], io);
  return { code, results: io.out.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

test('bms decode --protocol jbd: the batmon capture gives the basic info as JSON', async () => {
  const { code, results } = await decode('jbd', captures.JBD_BASIC_BATMON_8CELL);
  assert.equal(code, 0);
  assert.equal(results.length, 1);
  assert.equal((results[0]!.basic as { packMv: number }).packMv, 26_400);
  assert.equal((results[0]!.basic as { currentMa: number }).currentMa, -6040);
});

test('bms decode --protocol jbd: a forum capture with A5 in byte 1 is decoded with the register guessed', async () => {
  const { results } = await decode('jbd', captures.JBD_CELLS_FORUM_12);
  assert.equal(results[0]!.registerGuessed, true);
  assert.equal((results[0]!.cellMv as number[]).length, 12);
});

test('bms decode --protocol daly: two captures with garbage between them, in order', async () => {
  const { code, results } = await decode('daly', Uint8Array.from([...captures.DALY_SOC_ESPHOME, 0x00, 0x13, ...captures.DALY_CELL_MINMAX_ESPHOME]));
  assert.equal(code, 0);
  assert.deepEqual(results.map((result) => (result.ok ? result.command : result.reason)), [0x90, 'resync', 0x91]);
  assert.deepEqual(results[0]!.soc, { packMv: 13_000, currentMa: 0, socPercent: 49.9 });
});

test('bms decode --protocol q1 and --protocol bridge on their reference bytes', async () => {
  const q1 = await decode('q1', captures.Q1_STATUS_NUT);
  assert.equal(q1.code, 0);
  assert.equal((q1.results[0]!.status as { batteryV: number }).batteryV, 22.7);
  const bridge = await decode('bridge', Uint8Array.of(0x03, 0x01, 0x31, 0x03, 0x06, 0xa1, 0x06, 0x19, 0x01, 0xf4, 0xbe, 0xd2, 0x00));
  assert.deepEqual(bridge.results, [{ ok: true, version: 1, seq: 6, message: { type: 'cut', delayMs: 500 } }]);
});

test('bms decode: a bad checksum exits 1 with the reason; bad hex and a missing protocol exit 2', async () => {
  const corrupt = captures.DALY_SOC_ESPHOME.slice();
  corrupt[12] = corrupt[12]! ^ 0xff;
  const bad = await decode('daly', corrupt);
  assert.equal(bad.code, 1);
  assert.equal(bad.results[0]!.reason, 'checksum');
  const io = captureIo();
  assert.equal(await bmsMain(['decode', '--protocol', 'jbd', 'zz'], io), 64);
  assert.match(io.err[0]!, /not hex bytes/);
  assert.equal(await bmsMain(['decode', 'dd a5'], io), 64);
  assert.match(io.err.join('\n'), /--protocol bridge\|jbd\|daly\|q1/);
});

for (const protocol of ['bridge', 'jbd', 'daly', 'q1'] as const) {
  test(`bms probe finds a ${protocol} device on a pty by asking each protocol in turn`, async () => {
    const dir = await tempDir(`probe-${protocol}`);
    const link = join(dir.path, 'dev');
    const sim = await startSim(['--protocol', protocol, '--pty', link]);
    try {
      const io = captureIo();
      const code = await bmsMain(['probe', link, '--timeout-ms', '1500', '--json'], io);
      assert.equal(code, 0, io.err.join('\n'));
      const result = JSON.parse(io.out.at(-1)!) as { protocol: string; status: { acPresent: boolean; packMv: number } };
      assert.equal(result.protocol, protocol);
      assert.equal(result.status.acPresent, true);
      assert.ok(result.status.packMv > 16_000);
    } finally {
      await sim.stop();
      await dir.remove();
    }
  });
}

test('bms probe: nothing answering lists what was tried and exits 1', async () => {
  const port = await freePort();
  const io = captureIo();
  assert.equal(await bmsMain(['probe', `127.0.0.1:${port}`, '--protocol', 'bridge', '--timeout-ms', '300', '--json'], io), 1);
  const result = JSON.parse(io.out.at(-1)!) as { protocol: null; tried: Array<{ protocol: string; result: string }> };
  assert.equal(result.protocol, null);
  assert.match(result.tried[0]!.result, /ECONNREFUSED/);
});

test('bms-sim --help and bms --help describe every option and exit 0', async () => {
  const io = captureIo();
  assert.equal(await bmsSimMain(['--help'], io), 0);
  for (const option of ['--protocol', '--tcp', '--serial', '--pty', '--scenario', '--step', 'drop-link', 'garbage', '"event":"power-cut"']) assert.ok(io.out[0]!.includes(option), option);
  assert.equal(await bmsMain(['--help'], io), 0);
  assert.match(io.out[1]!, /probe[\s\S]*decode/);
});

test('bms-sim refuses bad options with the option named, and exits 64 (EX_USAGE)', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--protocol', 'modbus', '--tcp', '127.0.0.1:0'], /--protocol modbus: expected one of bridge, jbd, daly, q1/],
    [['--protocol', 'bridge'], /exactly one of --tcp/],
    [['--tcp', 'localhost'], /--tcp localhost: expected HOST:PORT/],
    [['--tcp', '127.0.0.1:0', '--soc', '140'], /--soc 140: expected a number in 0..100/],
    [['--tcp', '127.0.0.1:0', '--step', 'soon:ac off'], /expected MS:COMMAND/],
    [['--tcp', '127.0.0.1:0', '--step', '100:ac maybe'], /use "ac off" or "ac on"/],
  ];
  for (const [argv, pattern] of cases) {
    const io = captureIo();
    assert.equal(await bmsSimMain(argv, io), 64, argv.join(' '));
    assert.match(io.err[0]!, pattern);
  }
});

test('a scenario file with a mistake is refused with the file and the field named', async () => {
  const dir = await tempDir('scenario-bad');
  try {
    const file = join(dir.path, 'bad.yaml');
    await writeFile(file, 'battery:\n  capacityMah: -5\n');
    const io = captureIo();
    assert.equal(await bmsSimMain(['--tcp', '127.0.0.1:0', '--scenario', file], io), 64);
    assert.match(io.err[0]!, /bad\.yaml: battery\.capacityMah: -5 is not a number in 1\.\.10000000/);
    await writeFile(file, 'steps:\n  - { atMs: 10, command: "explode" }\n');
    assert.equal(await bmsSimMain(['--tcp', '127.0.0.1:0', '--scenario', file], io), 64);
    assert.match(io.err.join('\n'), /steps\[0\]\.command: unknown command "explode"/);
  } finally {
    await dir.remove();
  }
});

test('a YAML scenario drives the simulator: its steps run in order and push their events', async () => {
  const dir = await tempDir('scenario');
  const file = join(dir.path, 'outage.yaml');
  await writeFile(file, ['battery:', '  socPercent: 50', '  speed: 10', 'steps:', '  - { atMs: 300, command: "ac off" }', '  - { atMs: 600, command: "soc 4" }', '  - { atMs: 900, command: "ac on" }'].join('\n'));
  const sim = await startSim(['--tcp', '127.0.0.1:0', '--scenario', file]);
  try {
    const step = await sim.waitForLine('last step', (line) => line.event === 'step' && line.command === 'ac on');
    assert.equal(step.atMs, 900);
    await sim.waitForLine('its event', (line) => line.event === 'power-event' && line.kind === 'ac-restored');
    const kinds = sim.lines().filter((line) => line.event === 'power-event').map((line) => line.kind);
    assert.deepEqual(kinds, ['ac-lost', 'low-battery', 'brownout', 'ac-restored'], 'soc 4 crosses both the low-battery (20 %) and brownout (5 %) thresholds');
  } finally {
    await sim.stop();
    await dir.remove();
  }
});
