// `lastgasp watch` prints one line per message; a handoff's says who hands off to whom, what the sibling holds,
// whether it is complete and, for one whose budget ran out, how long its tail goes on behind it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { textLine, type WatchLine } from '../../agent/cli/watch.ts';

const AT_MS = Date.UTC(2026, 11, 2, 9, 30, 0, 125);

function handoffLine(message: Record<string, unknown>): string {
  const line: WatchLine = { atMs: AT_MS, topic: 'lastgasp/v1/line-1/leader', retained: true, type: 'leader', node: 'gw-a', verified: true, message: { kind: 'handoff', node: 'gw-a', to: 'gw-b', epoch: 3, ...message } };
  return textLine(line);
}

test('a complete handoff and one whose tail goes on behind it, as watch prints them', () => {
  assert.equal(handoffLine({ lastSeq: 120, committed: 120, complete: true }), '09:30:00.125 R lastgasp/v1/line-1/leader  handoff gw-a -> gw-b epoch 3 lastSeq 120 committed 120 complete  (verified)');
  assert.equal(
    handoffLine({ lastSeq: 90, committed: 120, complete: false, tailMs: 340 }),
    '09:30:00.125 R lastgasp/v1/line-1/leader  handoff gw-a -> gw-b epoch 3 lastSeq 90 committed 120 INCOMPLETE, the tail goes on for 340 ms  (verified)',
  );
});
