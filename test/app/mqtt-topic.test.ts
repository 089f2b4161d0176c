// Topic filters of the MQTT listener's journal (MQTT 3.1.1 §4.7): "+" matches one level, "#" the rest
// (the parent level included), "$" topics only through a filter that names them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { topicMatches } from '../../agent/app/mqtt-ingest.ts';

test('topic filters match as MQTT brokers match them', () => {
  const cases: Array<[string, string, boolean]> = [
    ['plant/#', 'plant/line1/temp', true],
    ['plant/#', 'plant', true],
    ['plant/#', 'plants/x', false],
    ['plant/+/temp', 'plant/line1/temp', true],
    ['plant/+/temp', 'plant/line1/hum', false],
    ['plant/+/temp', 'plant/temp', false],
    ['plant/+', 'plant/a/b', false],
    ['plant/line1', 'plant/line1', true],
    ['#', 'anything/at/all', true],
    ['#', '$SYS/broker/load', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/broker/load', true],
    ['+/+', 'a/', true],
  ];
  for (const [filter, topic, expected] of cases) assert.equal(topicMatches(filter, topic), expected, `${filter} ~ ${topic}`);
});
