/**
 * The power-loss file system (powerloss_fs.py, which documents the model) as a test harness: mount it on a
 * fresh directory, cut the power, remount what was durable. The tests that use it need root (/dev/fuse and
 * mount(2)) and Debian's fuse3 and python3-fusepy, which `npm test` installs as root.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SCRIPT = join(fileURLToPath(import.meta.url), '..', 'powerloss_fs.py');
/** Debian's interpreter, which python3-fusepy installs for; not whatever python3 comes first in PATH. */
const PYTHON = '/usr/bin/python3';

export type PowerLossModel = 'posix' | 'ext4';

export interface PowerLossStats {
  writes: number;
  fsyncs: number;
  dirSyncs: number;
  journalCommits: number;
}

export interface PowerLossFs {
  readonly mountpoint: string;
  readonly model: PowerLossModel;
  /**
   * Cut the power: from now on every operation on the mount fails with EIO, and the next mount holds only
   * what was durable (plus, with `tornProbability`, parts of pending writes).
   */
  cut(options?: { tornProbability?: number; seed?: number }): Promise<PowerLossStats>;
  /** Unmount and mount the durable state (after a cut; without one, the current state is made durable). */
  remount(): Promise<void>;
  stats(): Promise<PowerLossStats & { inodes: number }>;
  /** Unmount, stop the file system and remove the mountpoint. */
  close(): Promise<void>;
}

interface Answer {
  ok: boolean;
  error?: string;
  stats?: PowerLossStats;
  inodes?: number;
}

class Control {
  private readonly waiting: Array<(answer: Answer) => void> = [];
  private queue: Promise<unknown> = Promise.resolve();
  output = '';

  constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const next = this.waiting.shift();
      if (next) next(JSON.parse(line) as Answer);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.output = (this.output + chunk.toString('utf8')).slice(-20_000);
    });
  }

  /** The answer to the mount itself (the first line the file system prints). */
  first(): Promise<Answer> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** One command at a time: answers come back in order. */
  send(message: Record<string, unknown>): Promise<Answer> {
    const run = this.queue.then(
      () =>
        new Promise<Answer>((resolve, reject) => {
          if (this.child.exitCode !== null) {
            reject(new Error(`powerloss-fs exited (${this.child.exitCode}):\n${this.output}`));
            return;
          }
          this.waiting.push((answer) => (answer.ok ? resolve(answer) : reject(new Error(`powerloss-fs ${String(message.cmd)}: ${answer.error}\n${this.output}`))));
          this.child.stdin!.write(`${JSON.stringify(message)}\n`);
        }),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }
}

export async function mountPowerLossFs(model: PowerLossModel): Promise<PowerLossFs> {
  const mountpoint = await mkdtemp(join(tmpdir(), `lastgasp-powerloss-${model}-`));
  // -B: no __pycache__ left in the source tree.
  const child = spawn(PYTHON, ['-B', SCRIPT, mountpoint, model], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const control = new Control(child);
  const mounted = await Promise.race([control.first(), exited.then((): Answer => ({ ok: false, error: `exited (${child.exitCode})` }))]);
  if (!mounted.ok) {
    child.kill('SIGKILL');
    await rm(mountpoint, { recursive: true, force: true });
    throw new Error(`powerloss-fs did not mount on ${mountpoint}: ${mounted.error}\n${control.output}`);
  }
  return {
    mountpoint,
    model,
    async cut(options = {}) {
      return (await control.send({ cmd: 'cut', tornProbability: options.tornProbability ?? 0, seed: options.seed ?? 0 })).stats!;
    },
    async remount() {
      await control.send({ cmd: 'remount' });
    },
    async stats() {
      const answer = await control.send({ cmd: 'stats' });
      return { ...answer.stats!, inodes: answer.inodes! };
    },
    async close() {
      if (child.exitCode === null) {
        await control.send({ cmd: 'exit' }).catch(() => undefined);
        child.stdin!.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      // A file system killed before it unmounted leaves a dead mount ("transport endpoint is not connected").
      spawnSync('umount', ['-l', mountpoint], { stdio: 'ignore' });
      await rm(mountpoint, { recursive: true, force: true });
    },
  };
}
