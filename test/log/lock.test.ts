// One agent per log directory: real processes race for a directory, a SIGKILLed holder's lock is taken
// over, a second open in the same process is refused until the first closes, and locks recorded by a
// previous boot or by a recycled pid (read from the real /proc) do not block.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createFlashLog } from '../../agent/log/index.ts';
import { isLastgaspError } from '../../agent/util/index.ts';
import { tempDir } from '../support/ports.ts';
import { killAll, startProcess, type Managed } from '../support/processes.ts';

after(killAll);

const HOLDER = new URL('./support/lock-holder.ts', import.meta.url).pathname;

function startHolder(name: string, dir: string): Managed {
  return startProcess(name, process.execPath, ['--import', 'tsx', HOLDER, dir]);
}

async function outcome(holder: Managed): Promise<{ opened: true; pid: number } | { opened: false; error: { code: string; message: string; detail: { pid: number; dir: string } } }> {
  const line = await holder.waitForOutput(/^(OPENED \d+|REFUSED .*)$/m, 30_000);
  if (line.startsWith('OPENED')) return { opened: true, pid: Number(line.split(' ')[1]) };
  return { opened: false, error: JSON.parse(line.slice('REFUSED '.length)) };
}

/** Fields 22 (start time) of a process's /proc stat line. */
function startTicks(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
}

test('a second agent process on the same directory is refused with the holder named, and takes over once the holder is SIGKILLed', async () => {
  const dir = await tempDir('lock-procs');
  try {
    const first = startHolder('holder-1', dir.path);
    const opened = await outcome(first);
    assert.ok(opened.opened);
    const second = startHolder('holder-2', dir.path);
    const refused = await outcome(second);
    assert.equal(refused.opened, false);
    if (refused.opened) return;
    assert.equal(refused.error.code, 'LOG_LOCKED');
    assert.equal(refused.error.detail.pid, first.child.pid);
    assert.equal(refused.error.detail.dir, dir.path);
    assert.ok(refused.error.message.includes(dir.path) && refused.error.message.includes(String(first.child.pid)), refused.error.message);
    assert.equal(await second.exited, 3);
    // The holder dies without releasing anything: its lock is stale by pid liveness, no timeout involved.
    await first.kill('SIGKILL');
    const third = startHolder('holder-3', dir.path);
    assert.deepEqual(await outcome(third), { opened: true, pid: third.child.pid });
    await third.kill('SIGKILL');
  } finally {
    await killAll();
    await dir.remove();
  }
});

test('processes starting at once on one directory: exactly one opens it', async () => {
  const dir = await tempDir('lock-race');
  try {
    const racers = Array.from({ length: 4 }, (_, i) => startHolder(`racer-${i}`, dir.path));
    const results = await Promise.all(racers.map(outcome));
    const winners = results.filter((r) => r.opened);
    assert.equal(winners.length, 1, JSON.stringify(results));
    for (const result of results) {
      if (!result.opened) {
        assert.equal(result.error.code, 'LOG_LOCKED');
        if (result.error.detail.pid !== undefined) assert.equal(result.error.detail.pid, (winners[0] as { pid: number }).pid);
      }
    }
  } finally {
    await killAll();
    await dir.remove();
  }
});

test('in one process the directory opens once at a time; close releases it', async () => {
  const dir = await tempDir('lock-inproc');
  try {
    const first = createFlashLog({ dir: dir.path, segmentBytes: 64 * 1024 });
    await first.open();
    await first.append(Uint8Array.of(1));
    const second = createFlashLog({ dir: `${dir.path}/.`, segmentBytes: 64 * 1024 });
    await assert.rejects(second.open(), (error) => isLastgaspError(error, 'LOG_LOCKED') && error.detail?.pid === process.pid);
    await assert.rejects(second.append(Uint8Array.of(2)), (error) => isLastgaspError(error, 'LOG_CLOSED'));
    await first.close();
    const third = createFlashLog({ dir: dir.path, segmentBytes: 64 * 1024 });
    assert.equal((await third.open()).committed, 1);
    await third.close();
    // Only the newest lock file is left, marked released.
    const locks = readdirSync(dir.path).filter((name) => name.startsWith('lock'));
    assert.equal(locks.length, 1, locks.join(','));
    assert.equal(JSON.parse(readFileSync(`${dir.path}/${locks[0]}`, 'utf8')).released, true);
  } finally {
    await dir.remove();
  }
});

test('a lock left by a previous boot or by a process whose pid was recycled does not block; a live holder does', async () => {
  const dir = await tempDir('lock-stale');
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    // pid 1 is always alive: only the boot id or the start time can make its lock stale.
    const initStart = startTicks(1);
    const holder = { pid: 1, boot, start: initStart, token: 'feedfacefeedface', host: 'gateway', sinceMs: 1_700_000_000_000 };
    writeFileSync(`${dir.path}/lock.7`, JSON.stringify(holder) + '\n');
    const live = createFlashLog({ dir: dir.path, segmentBytes: 64 * 1024 });
    await assert.rejects(live.open(), (error) => isLastgaspError(error, 'LOG_LOCKED') && error.detail?.pid === 1);

    writeFileSync(`${dir.path}/lock.8`, JSON.stringify({ ...holder, boot: '00000000-0000-0000-0000-000000000000' }) + '\n');
    const afterReboot = createFlashLog({ dir: dir.path, segmentBytes: 64 * 1024 });
    await afterReboot.open();
    await afterReboot.close();

    const newest = Math.max(...readdirSync(dir.path).filter((n) => /^lock\.\d+$/.test(n)).map((n) => Number(n.slice(5))));
    writeFileSync(`${dir.path}/lock.${newest + 1}`, JSON.stringify({ ...holder, start: initStart + 12345 }) + '\n');
    const recycled = createFlashLog({ dir: dir.path, segmentBytes: 64 * 1024 });
    await recycled.open();
    await recycled.close();
  } finally {
    await dir.remove();
  }
});
