/**
 * A client for the local API, for TypeScript applications on the gateway, the demo and the tests. It keeps
 * connections alive (one fsync-bound write per request is the cost that matters, not TCP setup), on its own
 * lean HTTP/1.1 transport (http/client-pool.ts) rather than Node's http client, which cost several times the
 * CPU per request that the agent spends storing a small entry. Every call, the long poll of `entries`
 * included, goes over it: the agent answers each with one Content-Length body.
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { LastgaspError, splitHostPort, type ErrorCode } from '../util/index.ts';
import { ClientPool, encodeRequest } from './http/index.ts';
import type { CopyOptions } from './copy-wait.ts';
import type { BatchResult } from './http-api.ts';
import { encodeOp, type Op } from './ops.ts';

export interface ApiClientOptions {
  /** The agent's api.listen: "127.0.0.1:8181", "unix:/run/lastgasp/api.sock", or a socket's bare path. */
  address: string;
  /** The bearer token (TCP). */
  token?: string;
  /** A file holding the bearer token, read at the first request (the agent may create it after this client). */
  tokenFile?: string;
  /** The CA (PEM) that signed the agent's certificate: talk HTTPS. */
  ca?: string;
  /** Connections kept open at once (bounds the concurrency of a burst). */
  socketsMax?: number;
  timeoutMs?: number;
}

interface Reply {
  status: number;
  body: Buffer;
}

export class ApiClient {
  private readonly pool: ClientPool;
  /** The Host header: a loopback name the agent's DNS-rebinding check accepts (api-access.ts). */
  private readonly host: string;
  /** The bearer token once checked usable (from options.token, or read from options.tokenFile). */
  private token: string | undefined;

  constructor(private readonly options: ApiClientOptions) {
    const target = apiTarget(options.address);
    // The pool closes an idle kept-alive connection a second before the server's announced Keep-Alive
    // timeout (the agent's idleTimeoutMs): a request sent as the server closes would fail with ECONNRESET
    // ("socket hang up"), which a writer that paused for api.idleTimeoutMs met under load.
    this.pool = new ClientPool({ target, ...(options.ca ? { ca: options.ca } : {}), socketsMax: options.socketsMax ?? 64, timeoutMs: options.timeoutMs ?? 30_000 });
    this.host = 'socketPath' in target ? 'localhost' : `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
  }

  close(): void {
    this.pool.close();
  }

  /** `copy`: acknowledged only once replicated at that level (see copy-wait.ts); NOT_REPLICATED otherwise. */
  async append(data: Uint8Array, copy?: CopyOptions): Promise<{ seq: number; epoch: number }> {
    return this.json(await this.call('POST', `/v1/entries${copyQuery(copy)}`, data), 201);
  }

  /**
   * Many entries and KV ops in one request (POST /v1/batch, a CBOR sequence): every one acknowledged, entry
   * i at `firstSeq + i`, or none of them (the error of the whole batch).
   */
  async batch(ops: readonly Op[], copy?: CopyOptions): Promise<BatchResult & { count: number }> {
    const encoded = ops.map(encodeOp);
    const body = new Uint8Array(encoded.reduce((sum, op) => sum + op.length, 0));
    let at = 0;
    for (const op of encoded) {
      body.set(op, at);
      at += op.length;
    }
    return this.json(await this.call('POST', `/v1/batch${copyQuery(copy)}`, body, 'application/cbor-seq'), 201);
  }

  async put(key: string, value: Uint8Array | string, copy?: CopyOptions): Promise<{ seq: number; epoch: number }> {
    return this.json(await this.call('PUT', `/v1/kv/${encodeURIComponent(key)}${copyQuery(copy)}`, toBytes(value)), 200);
  }

  async delete(key: string, copy?: CopyOptions): Promise<{ seq: number; epoch: number }> {
    return this.json(await this.call('DELETE', `/v1/kv/${encodeURIComponent(key)}${copyQuery(copy)}`), 200);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const reply = await this.call('GET', `/v1/kv/${encodeURIComponent(key)}`);
    if (reply.status === 404) return undefined;
    if (reply.status !== 200) throw replyError(reply);
    return new Uint8Array(reply.body);
  }

  /** Many values in one request, all read at the same applied seq; absent keys map to undefined. */
  async getMany(keys: readonly string[]): Promise<{ values: Map<string, Uint8Array | undefined>; appliedSeq: number }> {
    const body = new TextEncoder().encode(JSON.stringify({ keys }));
    const reply = this.json<{ values: Record<string, string | null>; appliedSeq: number }>(await this.call('POST', '/v1/kv/get', body, 'application/json'), 200);
    const values = new Map<string, Uint8Array | undefined>();
    for (const key of keys) {
      const encoded = reply.values[key];
      values.set(key, typeof encoded === 'string' ? new Uint8Array(Buffer.from(encoded, 'base64')) : undefined);
    }
    return { values, appliedSeq: reply.appliedSeq };
  }

  async list(prefix = ''): Promise<{ keys: string[]; count: number; digest: string; appliedSeq: number }> {
    return this.json(await this.call('GET', `/v1/kv?prefix=${encodeURIComponent(prefix)}`), 200);
  }

  /** `waitMs`: when nothing is there from `from` yet, wait up to that long for it (a long poll). */
  async entries(from: number, limit = 1000, waitMs = 0): Promise<{ entries: Array<Record<string, unknown> & { seq: number; epoch: number }>; next: number; committed: number }> {
    return this.json(await this.call('GET', `/v1/entries?from=${from}&limit=${limit}${waitMs > 0 ? `&waitMs=${waitMs}` : ''}`), 200);
  }

  async status(): Promise<Record<string, any>> {
    return this.json(await this.call('GET', '/v1/status'), 200);
  }

  /** GET /metrics: the status and histograms in Prometheus text format. */
  async metrics(): Promise<string> {
    const reply = await this.call('GET', '/metrics');
    if (reply.status !== 200) throw replyError(reply);
    return reply.body.toString('utf8');
  }

  /** Liveness: the agent's process and event loop answer. */
  async health(): Promise<boolean> {
    try {
      return (await this.call('GET', '/v1/health')).status === 200;
    } catch {
      return false;
    }
  }

  /** Readiness: whether the agent accepts writes now, and the reason when it does not. */
  async ready(): Promise<{ ready: boolean; reason?: string; message?: string }> {
    const reply = await this.call('GET', '/v1/ready');
    if (reply.status !== 200 && reply.status !== 503) throw replyError(reply);
    return JSON.parse(reply.body.toString('utf8')) as { ready: boolean; reason?: string; message?: string };
  }

  async setReplicationPaused(paused: boolean): Promise<void> {
    this.json(await this.call('POST', `/v1/admin/replication/${paused ? 'pause' : 'resume'}`, new Uint8Array(0)), 200);
  }

  private bearer(): string | undefined {
    // Checked once and kept; a file is read again on each call until its token is usable (it may be read
    // while the agent or an operator is still putting it in place).
    if (this.token !== undefined) return this.token;
    const { token, tokenFile } = this.options;
    if (token !== undefined) return (this.token = usableToken(token, undefined));
    if (tokenFile === undefined) return undefined;
    return (this.token = usableToken(readToken(tokenFile), tokenFile));
  }

  private json<T>(reply: Reply, expected: number): T {
    if (reply.status !== expected) throw replyError(reply);
    return JSON.parse(reply.body.toString('utf8')) as T;
  }

  private async call(method: string, path: string, body?: Uint8Array, contentType = 'application/octet-stream'): Promise<Reply> {
    const token = this.bearer();
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${this.host}\r\n`;
    if (token !== undefined) head += `Authorization: Bearer ${token}\r\n`;
    if (body) head += `Content-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n`;
    const reply = await this.pool.request(encodeRequest(head, body), `${method} ${path}`);
    return { status: reply.status, body: Buffer.from(reply.body.buffer, reply.body.byteOffset, reply.body.byteLength) };
  }
}

/** "unix:/path", "/path" (a socket), "host:port" or "[v6]:port". */
export function apiTarget(address: string): { socketPath: string } | { host: string; port: number } {
  if (address.startsWith('unix:')) return { socketPath: address.slice('unix:'.length) };
  if (address.startsWith('/')) return { socketPath: address };
  const { host, port } = splitHostPort(address);
  if (!Number.isInteger(port)) throw new LastgaspError('BAD_REQUEST', `API address "${address}" is neither host:port nor a socket path (unix:/run/lastgasp/api.sock)`);
  return { host, port };
}

function copyQuery(copy: CopyOptions | undefined): string {
  if (!copy) return '';
  const params = new URLSearchParams();
  if (copy.ackAfter) params.set('ackAfter', copy.ackAfter);
  if (copy.timeoutMs !== undefined) params.set('timeoutMs', String(copy.timeoutMs));
  const text = params.toString();
  return text ? `?${text}` : '';
}

function toBytes(value: Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? new TextEncoder().encode(value) : value;
}

function replyError(reply: Reply): LastgaspError {
  let parsed: { error?: { code?: string; message?: string } } = {};
  try {
    parsed = JSON.parse(reply.body.toString('utf8'));
  } catch {
    parsed = {};
  }
  const code = (parsed.error?.code ?? 'BAD_REQUEST') as ErrorCode;
  return new LastgaspError(code, parsed.error?.message ?? `HTTP ${reply.status}`, { status: reply.status, ...parsed.error });
}

function readToken(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new LastgaspError('UNAUTHORIZED', `cannot read the API token from ${file} (${(error as Error).message}); run as the agent's user or a member of the group the file is shared with`);
  }
}

/** The token goes into a header line as it is: a control character in it would end the line. */
function usableToken(token: string, file: string | undefined): string {
  const where = file === undefined ? '' : ` in ${file}`;
  if (token === '') throw new LastgaspError('UNAUTHORIZED', `the API token${where} is empty`);
  if (!/^[\x21-\x7e]+$/.test(token)) throw new LastgaspError('UNAUTHORIZED', `the API token${where} holds a character that cannot go into an HTTP header (expected visible ASCII only)`);
  return token;
}
