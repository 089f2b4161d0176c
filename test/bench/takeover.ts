/**
 * `npm run bench:takeover`: how long a group is without a primary, with real agent processes on one local
 * mosquitto, a client writing to both nodes all the time:
 *
 *   - handoff: the BMS simulator reports a brownout; from the moment gw-a publishes its handoff record to the
 *     first write gw-b acknowledges (and gw-b's own `takeoverMs`, from receiving the record to serving);
 *   - silence: gw-a is SIGKILLed; from the kill to the first write gw-b acknowledges, for two lease settings.
 *     Its floor is `takeover.silenceMs` (a standby must wait that long, LEADERSHIP.md): the table gives the
 *     ratio to it.
 *
 * Rounds are interleaved (LASTGASP_BENCH_ROUNDS, default 3); the table gives medians; the last line is one
 * JSON object. Not part of `npm test`; run it with `nice`.
 */
import { startMosquitto } from '../support/mosquitto.ts';
import { createPtyPair } from '../support/pty.ts';
import { startBmsSim } from '../support/bms-sim.ts';
import { startPair, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { tempDir } from '../support/ports.ts';

const ROUNDS = Number(process.env.LASTGASP_BENCH_ROUNDS ?? 3);
const SETTINGS = [
  { name: 'fast', heartbeatMs: 200, silenceMs: 2000 },
  { name: 'moderate', heartbeatMs: 1000, silenceMs: 6000 },
];

/** Write to `agent` every few ms until one write is acknowledged; resolves with the wall time of the answer. */
async function firstAcknowledged(agent: AgentProcess, deadlineMs: number): Promise<number> {
  let index = 0;
  while (Date.now() < deadlineMs) {
    try {
      await agent.client.put(`probe-${index++}`, 'x');
      return Date.now();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  throw new Error(`${agent.node} acknowledged nothing before the deadline`);
}

async function handoffRound(): Promise<{ outageMs: number; takeoverMs: number }> {
  const dir = await tempDir('bench-handoff');
  const broker = await startMosquitto(dir.path);
  const pty = await createPtyPair(dir.path);
  const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
  try {
    const { a, b } = await startPair(dir.path, 'bench', broker.url, {
      extraA: { power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, cutDelayMs: 200 } },
    });
    await a.waitForEvent('power-link', (line) => line.state === 'up');
    for (let index = 0; index < 200; index++) await a.client.put(`k${index}`, 'v');
    sim.send('ac off');
    sim.send('brownout');
    const handoff = await a.waitForEvent('handoff', () => true, 30_000);
    const answeredMs = await firstAcknowledged(b, Date.now() + 30_000);
    const takeover = await b.waitForEvent('takeover', () => true, 30_000);
    await a.stop('SIGKILL');
    await b.stop();
    return { outageMs: answeredMs - (handoff.atMs as number), takeoverMs: takeover.takeoverMs as number };
  } finally {
    await sim.stop();
    await pty.close();
    await broker.stop();
    await dir.remove();
  }
}

async function silenceRound(setting: (typeof SETTINGS)[number]): Promise<{ outageMs: number; silentMs: number; takeoverMs: number }> {
  const dir = await tempDir('bench-silence');
  const broker = await startMosquitto(dir.path);
  try {
    const { a, b } = await startPair(dir.path, 'bench', broker.url, { extra: { replication: { heartbeatMs: setting.heartbeatMs }, takeover: { silenceMs: setting.silenceMs } } });
    for (let index = 0; index < 200; index++) await a.client.put(`k${index}`, 'v');
    await new Promise((resolve) => setTimeout(resolve, setting.heartbeatMs * 3));
    const killedMs = Date.now();
    await a.stop('SIGKILL');
    const answeredMs = await firstAcknowledged(b, Date.now() + setting.silenceMs * 5);
    const takeover = await b.waitForEvent('takeover', () => true, 30_000);
    await b.stop();
    return { outageMs: answeredMs - killedMs, silentMs: takeover.silentMs as number, takeoverMs: takeover.takeoverMs as number };
  } finally {
    await broker.stop();
    await dir.remove();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const handoff: Array<{ outageMs: number; takeoverMs: number }> = [];
  const silence = new Map<string, Array<{ outageMs: number; silentMs: number; takeoverMs: number }>>(SETTINGS.map((setting) => [setting.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    handoff.push(await handoffRound());
    for (const setting of SETTINGS) silence.get(setting.name)!.push(await silenceRound(setting));
  }
  console.log(`takeover bench: real agents on one local mosquitto, medians of ${ROUNDS} interleaved rounds`);
  const handoffOutage = median(handoff.map((row) => row.outageMs));
  const handoffTakeover = median(handoff.map((row) => row.takeoverMs));
  console.log(`handoff (brownout): handoff record → first write acknowledged by gw-b  ${handoffOutage} ms   (gw-b's takeoverMs ${handoffTakeover})`);
  const json: Record<string, unknown> = { handoff: { outageMs: handoffOutage, takeoverMs: handoffTakeover } };
  for (const setting of SETTINGS) {
    const rows = silence.get(setting.name)!;
    const outage = median(rows.map((row) => row.outageMs));
    const leaseMs = Math.floor(setting.silenceMs * 0.9 - 2 * setting.heartbeatMs);
    console.log(
      `silence (${setting.name}: heartbeatMs ${setting.heartbeatMs}, silenceMs ${setting.silenceMs}, leaseMs ${leaseMs}): SIGKILL → first write acknowledged by gw-b  ${outage} ms = ${(outage / setting.silenceMs).toFixed(2)} × silenceMs   (silentMs ${median(rows.map((row) => row.silentMs))}, takeoverMs ${median(rows.map((row) => row.takeoverMs))})`,
    );
    json[setting.name] = { heartbeatMs: setting.heartbeatMs, silenceMs: setting.silenceMs, leaseMs, outageMs: outage, ratioToSilence: Number((outage / setting.silenceMs).toFixed(3)) };
  }
  console.log(JSON.stringify(json));
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => killAll());
