// Random input through every decoder (the mqtt-packet testRandom idea, STYLE.md): pure noise, and valid
// frames mutated by bit flips, truncation, duplication and insertion, fed in random chunk sizes. For every
// input: nothing throws, the accumulator's memory stays within its bound, and every byte fed in is accounted
// for as part of a good frame, a counted drop, or what is still buffered. A seeded generator makes any
// failure replayable (the seed is in the assertion message).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BRIDGE_ENCODED_LEN_MAX,
  BridgeParser,
  cobsDecodeInto,
  Counters,
  DalyAccumulator,
  DalyCommand,
  DALY_FRAME_LEN,
  decodeDalyCells,
  decodeDalyFailures,
  decodeDalyMos,
  decodeDalySoc,
  decodeDalyStatus,
  decodeDalyTemperatures,
  decodeF,
  decodeFrame,
  decodeI,
  decodeJbdBasic,
  decodeJbdCells,
  decodeJbdHardware,
  decodeMessage,
  decodeQ1,
  DelimitedAccumulator,
  droppedBytes,
  encodeMessage,
  encodeQ1,
  JbdAccumulator,
  JBD_FRAME_LEN_MAX,
  MEGATEC_LINE_LEN_MAX,
  NUT_LINE_LEN_MAX,
  parseNutLine,
  sysfsView,
  type BridgeMessage,
} from '../../firmware-bridge/index.ts';
import { DECODERS } from '../../firmware-bridge/cli/index.ts';
import { jbdResponse } from '../../firmware-bridge/jbd/sim-device.ts';
import { dalyResponse } from '../../firmware-bridge/daly/sim-device.ts';
import * as captures from '../fixtures/bms-captures.ts';

/** Iterations per decoder: enough to hit every branch many times, few enough to run in a second or two. */
const ROUNDS = 3000;

class Random {
  constructor(private state: number) {}
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.state = x;
    return x;
  }
  below(n: number): number {
    return this.next() % n;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.next() & 0xff);
  }
}

/** A valid frame, mutated or not, or noise. */
function sample(random: Random, valid: readonly Uint8Array[]): Uint8Array {
  const choice = random.below(6);
  if (choice === 0) return random.bytes(random.below(600));
  const parts: number[] = [];
  for (let count = 1 + random.below(4); count > 0; count--) {
    const frame = Array.from(valid[random.below(valid.length)]!);
    if (choice === 2) frame[random.below(frame.length)]! ^= 1 << random.below(8);
    if (choice === 3) frame.length = random.below(frame.length);
    if (choice === 4) frame.splice(random.below(frame.length), 0, ...random.bytes(random.below(20)));
    if (choice === 5) parts.push(...frame);
    parts.push(...frame);
  }
  return Uint8Array.from(parts);
}

/** Feed in random chunk sizes (a UART delivers whatever the driver's read returned). */
function feed(random: Random, input: Uint8Array, push: (chunk: Uint8Array) => void): void {
  for (let offset = 0; offset < input.length; ) {
    const size = 1 + random.below(64);
    push(input.subarray(offset, offset + size));
    offset += size;
  }
}

function accounted(counters: Counters, buffered: number): void {
  const snapshot = counters.snapshot();
  const total = (snapshot['rx.frame-bytes'] ?? 0) + (snapshot['rx.idle-delimiters'] ?? 0) + droppedBytes(snapshot) + buffered;
  assert.equal(total, snapshot['rx.bytes'] ?? 0, `bytes accounted: ${JSON.stringify(snapshot)}`);
}

const BRIDGE_VALID: Uint8Array[] = (
  [
    { type: 'telemetry', acPresent: false, socPermille: 500, packMv: 13_000, currentMa: -900, cellMv: [3300, 3301, 3302, 3303], alarms: ['brownout'] },
    { type: 'power-event', kind: 'brownout', holdUpMs: 5000 },
    { type: 'cut', delayMs: 500 },
    { type: 'ack', ackSeq: 1, ackType: 0x31 },
    { type: 'heartbeat' },
  ] as BridgeMessage[]
).map((message, seq) => encodeMessage(message, seq));

test('bridge: random and mutated input never throws, stays bounded, and every byte is accounted for', () => {
  const random = new Random(0x5eed0001);
  for (let round = 0; round < ROUNDS; round++) {
    const parser = new BridgeParser({ frame: () => undefined, rejected: () => undefined });
    feed(random, sample(random, BRIDGE_VALID), (chunk) => {
      parser.push(chunk, round);
      assert.ok(parser.buffered <= BRIDGE_ENCODED_LEN_MAX);
    });
    accounted(parser.counters, parser.pending);
  }
});

test('bridge: the frame and message decoders return a result for any bytes', () => {
  const random = new Random(0x5eed0002);
  for (let round = 0; round < ROUNDS; round++) {
    const bytes = random.bytes(random.below(300));
    const framed = decodeFrame(bytes);
    assert.equal(typeof framed.ok, 'boolean');
    const decoded = decodeMessage({ version: 1 + random.below(2), type: [0x01, 0x02, 0x10, 0x11, 0x20, 0x30, 0x31, 0x32, 0x7e, 0x7f, random.below(256)][random.below(11)]!, seq: random.below(65536), body: bytes });
    assert.equal(typeof decoded.ok, 'boolean');
    cobsDecodeInto(bytes, new Uint8Array(bytes.length));
  }
});

const JBD_VALID = [captures.JBD_BASIC_BATMON_8CELL, captures.JBD_BASIC_SYSSI_EXAMPLE, captures.JBD_CELLS_FORUM_12, captures.JBD_HARDWARE_FORUM, jbdResponse(0x03, new Uint8Array(25))];

test('jbd: random and mutated input never throws, stays bounded, and every byte is accounted for', () => {
  const random = new Random(0x5eed0003);
  for (let round = 0; round < ROUNDS; round++) {
    const counters = new Counters();
    const accumulator = new JbdAccumulator(counters, (frame) => {
      decodeJbdBasic(frame.data);
      decodeJbdCells(frame.data);
      decodeJbdHardware(frame.data);
    });
    feed(random, sample(random, JBD_VALID), (chunk) => {
      accumulator.push(chunk);
      assert.ok(accumulator.buffered <= JBD_FRAME_LEN_MAX);
    });
    accounted(counters, accumulator.buffered);
  }
});

const DALY_VALID = [captures.DALY_SOC_ESPHOME, captures.DALY_CELL_MINMAX_ESPHOME, captures.DALY_MOS_BATMON, captures.DALY_STATUS_BATMON, dalyResponse(DalyCommand.CELLS, Uint8Array.of(1, 0x0c, 0xe4, 0x0c, 0xe4, 0x0c, 0xe4, 0))];

test('daly: random and mutated input never throws, stays bounded, and every byte is accounted for', () => {
  const random = new Random(0x5eed0004);
  for (let round = 0; round < ROUNDS; round++) {
    const counters = new Counters();
    const accumulator = new DalyAccumulator(counters, (frame) => {
      for (const decode of [decodeDalySoc, decodeDalyMos, decodeDalyStatus, decodeDalyCells, decodeDalyTemperatures, decodeDalyFailures]) decode(frame.data);
    });
    feed(random, sample(random, DALY_VALID), (chunk) => {
      accumulator.push(chunk);
      assert.ok(accumulator.buffered <= DALY_FRAME_LEN);
    });
    accounted(counters, accumulator.buffered);
  }
});

const Q1_VALID = [captures.Q1_STATUS_NUT, captures.F_RATINGS_NUT, captures.I_INFO_NUT, Uint8Array.from(encodeQ1({ inputV: 0, inputFaultV: 0, outputV: 230, loadPercent: 30, frequencyHz: 50, batteryV: 12.9, temperatureC: 25, utilityFail: true, batteryLow: true, bypassActive: false, upsFailed: false, standby: true, testInProgress: false, shutdownActive: true, beeperOn: true }), (c) => c.charCodeAt(0))];
const latin1 = new TextDecoder('latin1');

test('q1: random and mutated lines never throw, stay bounded, and every byte is accounted for', () => {
  const random = new Random(0x5eed0005);
  for (let round = 0; round < ROUNDS; round++) {
    const counters = new Counters();
    const accumulator = new DelimitedAccumulator({ delimiter: 0x0d, frameLenMax: MEGATEC_LINE_LEN_MAX }, counters, (line) => {
      counters.add('rx.frame-bytes', line.length + 1);
      const text = latin1.decode(line);
      decodeQ1(text);
      decodeF(text);
      decodeI(text);
    });
    feed(random, sample(random, Q1_VALID), (chunk) => {
      accumulator.push(chunk);
      assert.ok(accumulator.buffered <= MEGATEC_LINE_LEN_MAX);
    });
    accounted(counters, accumulator.pending);
  }
});

const NUT_VALID = ['VAR ups ups.status "OB LB"\n', 'BEGIN LIST VAR ups\n', 'END LIST VAR ups\n', 'ERR UNKNOWN-UPS\n', 'VAR ups ups.alarm "a \\"quoted\\" \\\\ alarm"\n'].map((text) => new TextEncoder().encode(text));

test('nut: random and mutated lines never throw, stay bounded, and every byte is accounted for', () => {
  const random = new Random(0x5eed0006);
  const utf8 = new TextDecoder();
  for (let round = 0; round < ROUNDS; round++) {
    const counters = new Counters();
    const accumulator = new DelimitedAccumulator({ delimiter: 0x0a, frameLenMax: NUT_LINE_LEN_MAX }, counters, (line) => {
      counters.add('rx.frame-bytes', line.length + 1);
      parseNutLine(utf8.decode(line));
    });
    feed(random, sample(random, NUT_VALID), (chunk) => accumulator.push(chunk));
    assert.ok(accumulator.buffered <= NUT_LINE_LEN_MAX);
    accounted(counters, accumulator.pending);
  }
});

test('sysfs: random attribute values give a view, never an exception', () => {
  const random = new Random(0x5eed0007);
  const words = ['Mains', 'Battery', 'USB', 'Discharging', 'Charging', 'Full', '1', '0', '-5', '99999999999', '', 'x', '\n', '12.5'];
  for (let round = 0; round < ROUNDS; round++) {
    const files = () => Object.fromEntries(['type', 'online', 'capacity', 'status', 'voltage_now', 'current_now', 'temp', 'capacity_level'].map((name) => [name, words[random.below(words.length)]!]));
    const view = sysfsView(new Map([['a', files()], ['b', files()]]));
    assert.ok(view.acPresent === undefined || typeof view.acPresent === 'boolean');
  }
});

test('bms decode: every protocol decoder returns results for random captures, never throws', () => {
  const random = new Random(0x5eed0008);
  for (const [name, decode] of Object.entries(DECODERS)) {
    for (let round = 0; round < ROUNDS / 3; round++) {
      const results = decode(sample(random, [...BRIDGE_VALID, ...JBD_VALID, ...DALY_VALID, ...Q1_VALID]));
      for (const result of results) assert.equal(typeof result.ok, 'boolean', name);
    }
  }
});
