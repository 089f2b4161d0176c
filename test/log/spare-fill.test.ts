// The spare segment's zero-fill is kept away from a brownout (issue 12): while the log syncs every batch at
// once (on battery, flushing) no spare is prepared in the background; a roll that needs one still gets it,
// and the background fill resumes when the sync mode is back to batched. A real log in a temporary directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFlashLog } from '../../agent/log/index.ts';
import { tempDir } from '../support/ports.ts';

const SEGMENT = 64 * 1024;

test('no background spare fill in immediate sync mode; a roll still finds a segment; the fill resumes after', async () => {
  const dir = await tempDir('spare-fill');
  const log = createFlashLog({ dir: dir.path, segmentBytes: SEGMENT });
  await log.open();
  try {
    await log.whenSettled();
    const spares = () => log.status().counters.spares!;
    const created = () => log.status().counters.sparesCreated!;
    assert.equal(spares(), 1, 'a spare is ready after open');
    const createdAtOpen = created();
    log.setSyncMode('immediate');
    const segments = () => log.status().segments.length;
    const fill = async (count: number) => {
      const before = segments();
      while (segments() < before + count) await log.append(new Uint8Array(4000).fill(3));
    };
    // The first roll takes the ready spare and leaves none behind.
    await fill(1);
    await log.whenSettled();
    assert.equal(spares(), 0, 'no spare prepared in the background while flushing');
    assert.equal(created(), createdAtOpen);
    // The next roll prepares the segment it needs on demand.
    await fill(1);
    await log.whenSettled();
    assert.equal(created(), createdAtOpen + 1, 'the roll prepared its own segment');
    assert.equal(spares(), 0);
    log.setSyncMode('batched');
    await log.whenSettled();
    assert.equal(spares(), 1, 'the background fill resumes on mains');
  } finally {
    await log.close();
    await dir.remove();
  }
});
