// The capture's position file is written in place at every step, without fsync: what loads back is either a
// whole state that was written or nothing (a new generation), never a mix of two.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CaptureStateFile, loadCaptureState, type CaptureState } from '../../agent/sqlite/capture-state.ts';
import { tempDir } from '../support/ports.ts';

const state = (seq: number, generation: string): CaptureState => ({ generation, seq, snapshotSeq: 1, dev: 2049, ino: 77, salt1: 5, salt2: 9, frameIndex: seq * 3, checksum: [seq, seq + 1], expectReset: false });

test('a shorter state written over a longer one loads whole; a torn or unchecked file loads as none', async () => {
  const dir = await tempDir('capture-state-file');
  const path = join(dir.path, 'sqlite-capture-app.json');
  const file = new CaptureStateFile(path);
  try {
    file.save(state(123_456, 'gw-a-generation-with-a-long-name-1'));
    file.save(state(7, 'gw-a-2'));
    assert.deepEqual(await loadCaptureState(path), state(7, 'gw-a-2'));
    file.save(state(8, 'gw-a-2'));
    assert.deepEqual(await loadCaptureState(path), state(8, 'gw-a-2'), 'written in place again');

    // A power cut that kept the start of the newest write and the end of the one before: the fields of the
    // two would parse as one state (a newer seq with an older frame); the checksum refuses it.
    const newest = await readFile(path, 'utf8');
    file.save(state(9, 'gw-a-2'));
    const torn = (await readFile(path, 'utf8')).slice(0, 30) + newest.slice(30);
    await writeFile(path, torn);
    assert.equal(JSON.parse(torn.split('\n')[0]!).seq, 9, 'the torn text still parses');
    assert.equal(await loadCaptureState(path), undefined);

    // A file without its checksum line (written by an older agent, or cut short) is not trusted either.
    await writeFile(path, JSON.stringify(state(9, 'gw-a-2')));
    assert.equal(await loadCaptureState(path), undefined);
    assert.equal(await loadCaptureState(join(dir.path, 'missing.json')), undefined);
  } finally {
    file.close();
    await dir.remove();
  }
});
