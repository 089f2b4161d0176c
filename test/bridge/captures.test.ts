// Every decoder on the real captures of research/power-anchors.md, byte for byte: each named fixture in
// test/fixtures/bms-captures.ts is fed to the driver's own accumulator one byte at a time (as a slow UART
// delivers it) and every decoded value is checked; the request builders must reproduce the captured requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Counters,
  DalyAccumulator,
  DalyCommand,
  dalyRequest,
  decodeDalyCellMinMax,
  decodeDalyMos,
  decodeDalySoc,
  decodeDalyStatus,
  decodeF,
  decodeI,
  decodeJbdBasic,
  decodeJbdCells,
  decodeJbdHardware,
  decodeQ1,
  JbdAccumulator,
  jbdReadRequest,
  megatecShutdownCommand,
  parseMegatecShutdown,
  type DalyFrame,
  type JbdFrame,
} from '../../firmware-bridge/index.ts';
import * as captures from '../fixtures/bms-captures.ts';

function jbdFrames(bytes: Uint8Array): { frames: JbdFrame[]; counters: Counters } {
  const counters = new Counters();
  const frames: JbdFrame[] = [];
  const accumulator = new JbdAccumulator(counters, (frame) => frames.push(frame));
  for (const byte of bytes) accumulator.push(Uint8Array.of(byte));
  return { frames, counters };
}

function dalyFrames(bytes: Uint8Array): DalyFrame[] {
  const frames: DalyFrame[] = [];
  const accumulator = new DalyAccumulator(new Counters(), (frame) => frames.push(frame));
  for (const byte of bytes) accumulator.push(Uint8Array.of(byte));
  return frames;
}

const text = (bytes: Uint8Array) => String.fromCharCode(...bytes).replace(/\r$/, '');

test('JBD read requests are built exactly as captured (DD A5 reg 00 chk 77)', () => {
  assert.deepEqual(jbdReadRequest(0x03), captures.JBD_REQUEST_BASIC);
  assert.deepEqual(jbdReadRequest(0x04), captures.JBD_REQUEST_CELLS);
  assert.deepEqual(jbdReadRequest(0x05), captures.JBD_REQUEST_HARDWARE);
});

test('JBD basic info, batmon-ha 8-cell capture: 26.40 V, -6.04 A, SOC 84 %, 21.0 and 20.4 °C', () => {
  const { frames, counters } = jbdFrames(captures.JBD_BASIC_BATMON_8CELL);
  assert.equal(frames.length, 1);
  assert.equal(frames[0]!.register, 0x03);
  const basic = decodeJbdBasic(frames[0]!.data);
  assert.ok(basic.ok);
  assert.deepEqual(basic.value, {
    packMv: 26_400,
    currentMa: -6040,
    remainingMah: 468_710,
    nominalMah: 560_000,
    cycles: 0,
    protectionBits: 0,
    alarms: [],
    version: 0x16,
    socPercent: 84,
    chargeFetOn: true,
    dischargeFetOn: true,
    cellCount: 8,
    temperaturesC: [21, 20.4],
  });
  assert.equal(counters.get('rx.frame-bytes'), captures.JBD_BASIC_BATMON_8CELL.length);
});

test('JBD basic info, syssi annotated example: 15.59 V, 0 A, SOC 100 %, 4 cells, three NTCs', () => {
  const { frames } = jbdFrames(captures.JBD_BASIC_SYSSI_EXAMPLE);
  const basic = decodeJbdBasic(frames[0]!.data);
  assert.ok(basic.ok);
  assert.equal(basic.value.packMv, 15_590);
  assert.equal(basic.value.currentMa, 0);
  assert.equal(basic.value.remainingMah, 4990);
  assert.equal(basic.value.nominalMah, 5000);
  assert.equal(basic.value.socPercent, 100);
  assert.equal(basic.value.cellCount, 4);
  assert.deepEqual(basic.value.temperaturesC, [22.6, 22.5, 22.1]);
});

test('JBD cells from the forum post (byte 1 printed as A5): 12 cells, 4150-4159 mV', () => {
  const { frames } = jbdFrames(captures.JBD_CELLS_FORUM_12);
  assert.equal(frames.length, 1, 'the checksum does not cover byte 1, so the frame is valid');
  assert.equal(frames[0]!.register, 0xa5);
  const cells = decodeJbdCells(frames[0]!.data);
  assert.ok(cells.ok);
  assert.deepEqual(cells.value, [4153, 4154, 4152, 4154, 4156, 4153, 4151, 4153, 4155, 4159, 4150, 4154]);
});

test('JBD hardware register from the forum post: "LH-SP15S001-P13S-30A" with checksum FB 39', () => {
  const { frames } = jbdFrames(captures.JBD_HARDWARE_FORUM);
  const model = decodeJbdHardware(frames[0]!.data);
  assert.ok(model.ok);
  assert.equal(model.value, 'LH-SP15S001-P13S-30A');
});

test('JBD captures back to back with garbage between them are all found, the garbage counted', () => {
  const stream = Uint8Array.from([0x13, 0x37, ...captures.JBD_BASIC_BATMON_8CELL, 0xdd, 0x00, ...captures.JBD_CELLS_FORUM_12]);
  const { frames, counters } = jbdFrames(stream);
  assert.equal(frames.length, 2);
  assert.ok(counters.get('drop.resync.bytes') >= 2);
});

test('Daly requests: zero-filled as in the protocol sheet, and 0xAA-filled as wired links need', () => {
  assert.deepEqual(dalyRequest(DalyCommand.SOC, { fill: 0x00 }), captures.DALY_REQUEST_SOC_ZERO);
  assert.deepEqual(dalyRequest(DalyCommand.MOS, { fill: 0x00 }), captures.DALY_REQUEST_MOS_ZERO);
  assert.deepEqual(dalyRequest(DalyCommand.STATUS, { fill: 0x00 }), captures.DALY_REQUEST_STATUS_ZERO);
  assert.deepEqual(dalyRequest(DalyCommand.CELLS, { fill: 0x00 }), captures.DALY_REQUEST_CELLS_ZERO);
  assert.deepEqual(dalyRequest(DalyCommand.SOC), captures.DALY_REQUEST_SOC_AA);
});

test('Daly SOC answer from esphome#12445: 13.0 V, 0 A, 49.9 %', () => {
  const frames = dalyFrames(captures.DALY_SOC_ESPHOME);
  assert.equal(frames.length, 1);
  assert.equal(frames[0]!.address, 0x01);
  assert.equal(frames[0]!.command, DalyCommand.SOC);
  assert.deepEqual(decodeDalySoc(frames[0]!.data), { packMv: 13_000, currentMa: 0, socPercent: 49.9 });
});

test('Daly cell min/max answer from esphome#12445: 3253 mV on cell 2, 3250 mV on cell 1', () => {
  const frames = dalyFrames(captures.DALY_CELL_MINMAX_ESPHOME);
  assert.deepEqual(decodeDalyCellMinMax(frames[0]!.data), { maxMv: 3253, maxCell: 2, minMv: 3250, minCell: 1 });
});

test('Daly MOS payload captured by batmon-ha: charging, both MOSFETs on, 253240 mAh', () => {
  const frames = dalyFrames(captures.DALY_MOS_BATMON);
  assert.deepEqual(decodeDalyMos(frames[0]!.data), { state: 'charging', chargeMos: true, dischargeMos: true, life: 0xca, remainingMah: 253_240 });
});

test('Daly status payload captured by batmon-ha: 8 cells, 1 sensor, 53 cycles, DI2 set', () => {
  const frames = dalyFrames(captures.DALY_STATUS_BATMON);
  assert.deepEqual(decodeDalyStatus(frames[0]!.data), { cells: 8, sensors: 1, charger: false, load: false, dio: 2, cycles: 53 });
});

test('Daly resyncs on A5 inside garbage that itself contains A5', () => {
  const frames = dalyFrames(Uint8Array.from([0xa5, 0x01, 0xa5, 0xff, ...captures.DALY_SOC_ESPHOME, 0xa5, ...captures.DALY_CELL_MINMAX_ESPHOME]));
  assert.deepEqual(frames.map((frame) => frame.command), [DalyCommand.SOC, DalyCommand.CELL_MINMAX]);
});

test('Megatec Q1 answer from NUT\'s testing table decodes column by column', () => {
  const q1 = decodeQ1(text(captures.Q1_STATUS_NUT));
  assert.ok(q1.ok);
  assert.deepEqual(q1.value, {
    inputV: 215,
    inputFaultV: 195,
    outputV: 230,
    loadPercent: 14,
    frequencyHz: 49,
    batteryV: 22.7,
    temperatureC: 30,
    utilityFail: false,
    batteryLow: false,
    bypassActive: false,
    upsFailed: false,
    standby: false,
    testInProgress: false,
    shutdownActive: false,
    beeperOn: false,
  });
});

test('Megatec Q1 answer from nutdrv_qx_megatec.c\'s comment: status bit b3 is a standby UPS', () => {
  const q1 = decodeQ1(text(captures.Q1_STATUS_NUT_COMMENT));
  assert.ok(q1.ok);
  assert.equal(q1.value.standby, true);
  assert.equal(q1.value.batteryV, 27.5);
});

test('Megatec F and I answers from NUT\'s testing table', () => {
  assert.deepEqual(decodeF(text(captures.F_RATINGS_NUT)), { ok: true, value: { inputV: 230, currentA: 0, batteryV: 24, frequencyHz: 50 } });
  assert.deepEqual(decodeI(text(captures.I_INFO_NUT)), { ok: true, value: { manufacturer: 'NOT_A_LIVE_UPS', model: 'TESTING', firmware: 'TESTING' } });
});

test('Megatec shutdown commands from NUT\'s testing table parse to their delays, and ours round up', () => {
  for (const [command, delayMs] of Object.entries(captures.MEGATEC_SHUTDOWN_COMMANDS)) assert.equal(parseMegatecShutdown(command), delayMs, command);
  assert.equal(megatecShutdownCommand(500), 'S.2\r', 'below 12 s the shortest delay a Megatec UPS knows');
  assert.equal(megatecShutdownCommand(30_000), 'S.5\r');
  assert.equal(megatecShutdownCommand(180_000), 'S03\r');
  assert.equal(megatecShutdownCommand(601_000), undefined, 'beyond 10 minutes');
});

test('a Q1 line that is cut short or carries a letter in a number is rejected with a reason, not thrown', () => {
  assert.deepEqual(decodeQ1('(215.0 195.0'), { ok: false, reason: 'length' });
  assert.deepEqual(decodeQ1('(2X5.0 195.0 230.0 014 49.0 22.7 30.0 00000000'), { ok: false, reason: 'field' });
  assert.deepEqual(decodeQ1('#215.0 195.0 230.0 014 49.0 22.7 30.0 00000000'), { ok: false, reason: 'marker' });
});
