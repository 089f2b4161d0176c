// NUT's line protocol as upsd writes it (docs/net-protocol.txt): quoted values with \" and \\ escapes, the
// fast path for plain VAR lines and the general path agree, and status tokens map to the normalized status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nutPowerView, parseNutLine, quoteNut, splitNutWords } from '../../firmware-bridge/index.ts';

test('VAR lines parse with and without escapes', () => {
  assert.deepEqual(parseNutLine('VAR ups ups.status "OB LB"'), { kind: 'var', ups: 'ups', name: 'ups.status', value: 'OB LB' });
  assert.deepEqual(parseNutLine('VAR ups ups.alarm "a \\"b\\" \\\\ c"\r'), { kind: 'var', ups: 'ups', name: 'ups.alarm', value: 'a "b" \\ c' });
  assert.deepEqual(parseNutLine('VAR ups battery.charge ""'), { kind: 'var', ups: 'ups', name: 'battery.charge', value: '' });
});

test('other answers: BEGIN, END, OK, ERR, and an unclosed quote', () => {
  assert.deepEqual(parseNutLine('BEGIN LIST VAR ups'), { kind: 'begin', what: 'LIST VAR ups' });
  assert.deepEqual(parseNutLine('END LIST VAR ups'), { kind: 'end', what: 'LIST VAR ups' });
  assert.deepEqual(parseNutLine('OK FSD-SET'), { kind: 'ok', text: 'FSD-SET' });
  assert.deepEqual(parseNutLine('ERR ACCESS-DENIED'), { kind: 'err', code: 'ACCESS-DENIED' });
  assert.equal(splitNutWords('VAR ups x "open'), undefined);
  assert.equal(parseNutLine('VAR ups x "open').kind, 'other');
});

test('quoting round-trips through the parser', () => {
  const value = 'pass "word" \\ with spaces';
  assert.deepEqual(splitNutWords(`PASSWORD ${quoteNut(value)}`), ['PASSWORD', value]);
});

test('status tokens and variables map to the normalized status', () => {
  const view = nutPowerView(
    new Map([
      ['ups.status', 'FSD OB LB'],
      ['battery.charge', '9'],
      ['battery.runtime', '120'],
      ['battery.voltage', '11.1'],
      ['battery.current', '-2.5'],
      ['ups.alarm', 'Replace battery!'],
    ]),
  );
  assert.equal(view.acPresent, false);
  assert.equal(view.lowBattery, true);
  assert.equal(view.forcedShutdown, true);
  assert.equal(view.packMv, 11_100);
  assert.equal(view.currentMa, -2500);
  assert.deepEqual(view.alarms, ['FSD', 'Replace battery!']);
  assert.equal(nutPowerView(new Map([['ups.status', 'OL CHRG']])).acPresent, true);
  assert.equal(nutPowerView(new Map()).acPresent, undefined);
});
