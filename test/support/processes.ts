import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/**
 * A child process the test owns: its output is kept (and printed if the test fails), and `kill()` waits
 * for it to exit. Every helper that starts a real program goes through this, so that no test leaves a
 * broker or an agent running behind it.
 */
export interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  output(): string;
  /** The output's lines that are JSON objects (agents log JSON in tests; the simulator prints JSON events). */
  jsonLines(): Array<Record<string, unknown>>;
  /** Resolve when a line matching `pattern` has appeared in stdout or stderr. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

const live = new Set<Managed>();

export function startProcess(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): Managed {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options });
  let output = '';
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  const onData = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (output.length > 4_000_000) output = output.slice(-2_000_000);
    for (const waiter of [...waiters]) {
      const match = output.match(waiter.pattern);
      if (match) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(match[0]);
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => {
    // 'close', not 'exit': only after it are the child's last stdout/stderr lines read, so a test that
    // looks at what a process printed before it exited sees all of it.
    child.once('close', (code, signal) => resolve(code ?? (signal ? -1 : null)));
    child.once('error', (error) => {
      output += `\n[spawn error] ${error.message}\n`;
      resolve(null);
    });
  });
  const managed: Managed = {
    name,
    child,
    exited,
    output: () => output,
    jsonLines: () => parseJsonLines(output),
    waitForOutput(pattern, timeoutMs = 10_000) {
      const match = output.match(pattern);
      if (match) return Promise.resolve(match[0]);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`${name}: no output matching ${pattern} after ${timeoutMs} ms; output so far:\n${output.slice(-4000)}`));
        }, timeoutMs);
        const waiter = {
          pattern,
          resolve: (line: string) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        waiters.push(waiter);
        void exited.then(() => {
          if (waiters.includes(waiter)) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(waiter), 1);
            reject(new Error(`${name} exited before printing ${pattern}; output:\n${output.slice(-4000)}`));
          }
        });
      });
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(timer);
      live.delete(managed);
      return code;
    },
  };
  live.add(managed);
  void exited.then(() => live.delete(managed));
  return managed;
}

/** Kill everything still running; tests call this from an `after` hook as a safety net. */
export async function killAll(): Promise<void> {
  await Promise.all([...live].map((managed) => managed.kill('SIGKILL')));
}

process.once('exit', () => {
  for (const managed of live) managed.child.kill('SIGKILL');
});

function parseJsonLines(text: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A line cut by the output buffer's trimming, or an interleaved write: not an event.
    }
  }
  return out;
}
