/**
 * A client for the local API, for TypeScript applications on the gateway, the demo and the tests. It keeps
 * connections alive (one fsync-bound write per request is the cost that matters, not TCP setup).
 */
import { Agent, request as httpRequest } from 'node:http';
import { LastgaspError, type ErrorCode } from '../util/index.ts';

export interface ApiClientOptions {
  /** Same syntax as the agent's api.listen: "127.0.0.1:8181" or "unix:/run/lastgasp/api.sock". */
  address: string;
  /** Connections kept open at once (bounds the concurrency of a burst). */
  socketsMax?: number;
  timeoutMs?: number;
}

interface Reply {
  status: number;
  body: Buffer;
}

export class ApiClient {
  private readonly agent: Agent;
  private readonly target: { socketPath: string } | { host: string; port: number };

  constructor(private readonly options: ApiClientOptions) {
    this.agent = new Agent({ keepAlive: true, maxSockets: options.socketsMax ?? 64 });
    const address = options.address;
    if (address.startsWith('unix:')) this.target = { socketPath: address.slice('unix:'.length) };
    else {
      const colon = address.lastIndexOf(':');
      this.target = { host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)) };
    }
  }

  close(): void {
    this.agent.destroy();
  }

  async append(data: Uint8Array): Promise<{ seq: number; epoch: number }> {
    return this.json(await this.call('POST', '/v1/entries', data), 201);
  }

  async put(key: string, value: Uint8Array | string): Promise<{ seq: number; epoch: number }> {
    return this.json(await this.call('PUT', `/v1/kv/${encodeURIComponent(key)}`, toBytes(value)), 200);
  }

  async delete(key: string): Promise<{ seq: number; epoch: number }> {
    return this.json(await this.call('DELETE', `/v1/kv/${encodeURIComponent(key)}`), 200);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const reply = await this.call('GET', `/v1/kv/${encodeURIComponent(key)}`);
    if (reply.status === 404) return undefined;
    if (reply.status !== 200) throw replyError(reply);
    return new Uint8Array(reply.body);
  }

  async list(prefix = ''): Promise<{ keys: string[]; count: number; digest: string; appliedSeq: number }> {
    return this.json(await this.call('GET', `/v1/kv?prefix=${encodeURIComponent(prefix)}`), 200);
  }

  async entries(from: number, limit = 1000): Promise<{ entries: Array<Record<string, unknown> & { seq: number; epoch: number }>; next: number; committed: number }> {
    return this.json(await this.call('GET', `/v1/entries?from=${from}&limit=${limit}`), 200);
  }

  async status(): Promise<Record<string, any>> {
    return this.json(await this.call('GET', '/v1/status'), 200);
  }

  async health(): Promise<boolean> {
    try {
      return (await this.call('GET', '/v1/health')).status === 200;
    } catch {
      return false;
    }
  }

  async setReplicationPaused(paused: boolean): Promise<void> {
    this.json(await this.call('POST', `/v1/admin/replication/${paused ? 'pause' : 'resume'}`), 200);
  }

  private json<T>(reply: Reply, expected: number): T {
    if (reply.status !== expected) throw replyError(reply);
    return JSON.parse(reply.body.toString('utf8')) as T;
  }

  private call(method: string, path: string, body?: Uint8Array): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const request = httpRequest(
        { ...this.target, agent: this.agent, method, path, timeout: this.options.timeoutMs ?? 30_000, headers: body ? { 'content-length': body.length, 'content-type': 'application/octet-stream' } : {} },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.once('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
          response.once('error', reject);
        },
      );
      request.once('timeout', () => request.destroy(new Error(`${method} ${path}: no answer in ${this.options.timeoutMs ?? 30_000} ms`)));
      request.once('error', reject);
      request.end(body);
    });
  }
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
