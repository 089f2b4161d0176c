import { spawnSync } from 'node:child_process';
import { request } from 'node:http';

/** Where a raw request goes: a Unix socket or a TCP port on loopback. */
export type ProbeTarget = { socketPath: string } | { host: string; port: number };

export interface ProbeRequest {
  method: string;
  path: string;
  /** Sent exactly as given (a `host` here replaces the one Node would add). */
  headers?: Record<string, string>;
  body?: string;
}

/** The answer's status and body, or the connection's error code (EACCES, ECONNRESET, ...). */
export type ProbeResult = { status: number; body: string } | { error: string };

// Runs in a child process as another user, so it may import nothing from this repository (the test's
// directories are private to root). It prints one JSON line: the status and body, or the error code.
const PROBE_SCRIPT = `
const http = require('node:http');
const [target, req] = JSON.parse(process.argv[1]);
const r = http.request({ ...target, method: req.method, path: req.path, headers: req.headers ?? {} }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => (body += chunk));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));
});
r.on('error', (error) => console.log(JSON.stringify({ error: error.code ?? error.message })));
r.end(req.body);
`;

/** Send one request from this process, with exactly the headers a browser or an attacker would send. */
export function probe(target: ProbeTarget, req: ProbeRequest): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const r = request({ ...target, method: req.method, path: req.path, headers: req.headers ?? {}, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    r.end(req.body);
  });
}

/**
 * Run a command as user `nobody` (group `nogroup`), with no supplementary groups or with `groups`, through
 * setpriv: what another local user on the gateway (an application, or an intruder in one) could do.
 */
export function runAsNobody(command: readonly string[], groups: readonly string[] = []): { status: number | null; stdout: string; stderr: string } {
  const groupArgs = groups.length > 0 ? [`--groups=${groups.join(',')}`] : ['--clear-groups'];
  const result = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', ...groupArgs, ...command], { encoding: 'utf8', timeout: 20_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `probe`, from a process running as `nobody`. */
export function probeAsNobody(target: ProbeTarget, req: ProbeRequest, groups: readonly string[] = []): ProbeResult {
  const run = runAsNobody([process.execPath, '-e', PROBE_SCRIPT, JSON.stringify([target, req])], groups);
  const line = run.stdout.trim().split('\n').at(-1) ?? '';
  if (!line.startsWith('{')) throw new Error(`probe as nobody printed nothing usable (exit ${run.status}): ${run.stderr}`);
  return JSON.parse(line) as ProbeResult;
}
