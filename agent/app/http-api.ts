/**
 * The local API for applications in any language: HTTP/1.1 on loopback or a Unix socket.
 *
 *   POST   /v1/entries              body: bytes            → 201 {"seq","epoch"}
 *   (every write takes ?ackAfter=flash|broker|replica&timeoutMs=N: acknowledged once copied at that level,
 *    504 NOT_REPLICATED after the timeout; the default is api.ackAfter, see copy-wait.ts)
 *   POST   /v1/batch                body: ops (CBOR sequence or JSON lines, batch-body.ts)
 *                                                          → 201 {"firstSeq","lastSeq","epoch","count"}: entry i has firstSeq + i;
 *                                                            all of them acknowledged, or none (one error)
 *   GET    /v1/entries?from=&limit=&waitMs=                → 200 {"entries":[{seq,epoch,timestampMs,op,key?,data?}],"next"}
 *                                                            (waitMs: when nothing is there from `from` yet, wait up to
 *                                                             that long for it: a long poll for consumers of the log)
 *   PUT    /v1/kv/{key}             body: value bytes      → 200 {"seq","epoch"}
 *   GET    /v1/kv/{key}                                    → 200 value bytes | 404
 *   DELETE /v1/kv/{key}                                    → 200 {"seq","epoch"}
 *   GET    /v1/kv?prefix=&limit=                           → 200 {"keys","count","digest","appliedSeq"}
 *   GET    /v1/status                                      → 200 role, epoch, power, watermarks, counters
 *   GET    /metrics                                        → 200 the status and histograms in Prometheus text format (metrics.ts)
 *   GET    /v1/health                                      → 200 while the process and its event loop work (liveness; no token)
 *   GET    /v1/ready                                       → 200 when accepting writes, 503 {"ready":false,"reason"} otherwise
 *   POST   /v1/admin/replication/pause | resume            → 200 (hold replication back, e.g. on a metered uplink)
 *
 * Who may call it is decided before any route (api-access.ts); the socket, its rights and the connection
 * limits live in api-listener.ts. Every acknowledged write (2xx) is on flash. Errors are JSON
 * {"error":{"code","message"}} with a stable code; NOT_PRIMARY answers name the current primary so that a
 * client can follow it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppendResult, FlashLog } from '../log/index.ts';
import { LastgaspError, isLastgaspError, isLoopbackHost, splitHostPort, type ErrorCode, type Logger } from '../util/index.ts';
import { AccessGate } from './api-access.ts';
import { ApiListener, type ListenerOptions } from './api-listener.ts';
import type { FastAnswer, FastRoutes, SimpleHead } from './http/index.ts';
import { copyOptions, decodeKey, jsonProps, positiveInt, requestTarget, sendJson, toBase64, type RequestTarget } from './http/request-parts.ts';
import { parseJsonLines, splitCborSeq } from './batch-body.ts';
import type { CopyOptions } from './copy-wait.ts';
import type { KvState } from './kv-state.ts';
import { METRICS_CONTENT_TYPE, renderMetrics, type Histogram } from './metrics.ts';
import { KV_KEY_BYTES_MAX, OP_DELETE, OP_ENTRY, OP_MQTT, OP_PUT, decodeOp, validKey, type Op } from './ops.ts';

/** Keys per POST /v1/kv/get: bounds the answer (values of up to log.entryBytesMax each) to what a client reads at once. */
const KV_GET_KEYS_MAX = 1000;

export interface AppBackend {
  /** Append an op as the primary; throws NOT_PRIMARY / HANDING_OFF / LOG_FULL / ... */
  append(op: Op, copy?: CopyOptions): Promise<AppendResult>;
  /** Append encoded ops (encodeOp) as one batch: all acknowledged or none; same refusals as `append`. */
  appendEncoded(payloads: readonly Uint8Array[], copy?: CopyOptions): Promise<BatchResult>;
  readonly state: KvState;
  readonly log: FlashLog;
  status(): Record<string, unknown>;
  /** Whether writes are accepted now; when not, a stable reason (STANDBY, HANDING_OFF, LOG_FAULT, ...). */
  readiness(): Promise<Readiness>;
  setReplicationPaused(paused: boolean): void;
  /** The histograms GET /metrics renders beside the status's counters. */
  histograms?(): readonly Histogram[];
}

const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_FOUND: 404,
  NOT_PRIMARY: 409,
  ENTRY_TOO_LARGE: 413,
  LOG_THROTTLED: 429,
  LOG_FULL: 507,
  LOG_NO_SPACE: 507,
  HANDING_OFF: 503,
  LEASE_LOST: 503,
  LOG_SEQ: 410,
  LOG_CLOSED: 503,
  LOG_FAULT: 503,
  LOG_READ_ONLY: 503,
  LOG_IO: 503,
  NOT_REPLICATED: 504,
};

/** Replay pages are bounded so that a reader cannot make the agent hold the log in memory. */
const REPLAY_LIMIT_MAX = 10_000;
const REPLAY_BYTES_MAX = 8 * 1024 * 1024;
/** Longest long poll: well inside the listener's silent-socket limit (120 s), so the poll ends, not the socket. */
const REPLAY_WAIT_MS_MAX = 60_000;

/** A batch's entries hold the seqs firstSeq..lastSeq, in the order they were given. */
export interface BatchResult {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly epoch: number;
}

/**
 * Largest batch body. The log takes at most one write (4 MiB with the default segments) per batch, so a
 * larger CBOR body could never be stored; JSON lines carry base64, a third less. Bounded per request so that
 * connectionsMax clients cannot make the agent hold more than this each.
 */
export const API_BATCH_BODY_BYTES_MAX = 4 * 1024 * 1024;
const BATCH_TYPES = new Set(['application/cbor-seq', 'application/x-ndjson', 'application/jsonl']);

export type Readiness = { ready: true } | { ready: false; reason: string; message: string };

export interface HttpApiOptions {
  /** Where and how to listen (everything but the TLS material, which start() receives). */
  listener: Omit<ListenerOptions, 'tls' | 'logger' | 'bodyBytesMax'>;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
  /** Largest request body: the log's entry limit plus the op's few bytes of framing. */
  bodyBytesMax: number;
  backend: AppBackend;
  logger: Logger;
}

export class HttpApi {
  private listener: ApiListener | undefined;
  private gate: AccessGate | undefined;
  private requests = 0;
  private failures = 0;
  private refused = 0;

  constructor(private readonly options: HttpApiOptions) {}

  get counters(): Record<string, number> {
    return { apiRequests: this.requests, apiErrors: this.failures, apiRefused: this.refused, ...this.listener?.counters };
  }

  /** GET /metrics: the same status GET /v1/status answers, in Prometheus text format. */
  async metricsText(): Promise<string> {
    const backend = this.options.backend;
    return renderMetrics({ ...backend.status(), ready: await backend.readiness(), api: this.counters }, backend.histograms?.() ?? []);
  }

  /** `secrets`: the bearer token (TCP) and the HTTPS certificate and key, read by the config's secrets reader. */
  async start(secrets: { token?: string; tls?: { cert: string; key: string } }): Promise<string> {
    const options = this.options;
    const listen = options.listener.listen;
    // A listen address that is not loopback (allowed only with TLS) is a name clients legitimately use.
    const own = listen.startsWith('unix:') ? [] : [splitHostPort(listen).host.toLowerCase()].filter((host) => !isLoopbackHost(host));
    this.gate = new AccessGate({ token: secrets.token, allowedHosts: [...options.allowedHosts.map((host) => host.toLowerCase()), ...own], allowedOrigins: options.allowedOrigins });
    this.listener = new ApiListener({ ...options.listener, bodyBytesMax: options.bodyBytesMax, tls: secrets.tls, logger: options.logger });
    return this.listener.start((request, response) => void this.handle(request, response), this.fastRoutes());
  }

  /**
   * The single writes (POST /v1/entries, PUT /v1/kv/{key}) with a plain target, for the listener's fast path
   * (http/fast-path.ts): the same access rules, the same writes and the same answers as through Node's
   * server, counted the same.
   */
  private fastRoutes(): FastRoutes {
    return {
      takes: (head) => (head.method === 'POST' ? head.target === '/v1/entries' : head.target.startsWith('/v1/kv/')),
      access: (head, connection) => {
        this.requests++;
        const access = this.gate!.check(head.method, head.target, head.headers, connection);
        if (access.ok) return undefined;
        this.refused++;
        return { status: access.status, json: JSON.stringify({ error: { code: access.code, message: access.message } }), ...(access.status === 401 ? { headers: { 'www-authenticate': 'Bearer' } } : {}) };
      },
      serve: (head, body) => this.serveFast(head, body),
    };
  }

  private async serveFast(head: SimpleHead, body: Uint8Array): Promise<FastAnswer> {
    try {
      const result = head.method === 'POST' ? await this.appendEntry(body, undefined) : await this.putValue(decodeKey(head.target.slice('/v1/kv/'.length)), body, undefined);
      return { status: head.method === 'POST' ? 201 : 200, json: JSON.stringify({ seq: result.seq, epoch: result.epoch }) };
    } catch (error) {
      this.failures++;
      const answer = this.errorAnswer(error);
      return { status: answer.status, json: JSON.stringify(answer.body) };
    }
  }

  private appendEntry(data: Uint8Array, copy: CopyOptions | undefined): Promise<AppendResult> {
    return this.options.backend.append({ op: OP_ENTRY, data }, copy);
  }

  /** A put is answered once the state shows it, so that a following GET sees it. */
  private async putValue(key: string, value: Uint8Array, copy: CopyOptions | undefined): Promise<AppendResult> {
    const backend = this.options.backend;
    const result = await backend.append({ op: OP_PUT, key, value }, copy);
    await backend.state.waitApplied(result.seq);
    return result;
  }

  async stop(): Promise<void> {
    await this.listener?.stop();
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    this.requests++;
    const url = requestTarget(request.url ?? '/');
    const access = this.gate!.check(request.method ?? 'GET', url.pathname, request.headers, request.socket);
    if (!access.ok) {
      this.refused++;
      // The body is not read: the connection is closed after the answer instead, so that no refused client
      // can make the agent read its upload.
      const headers: Record<string, string> = { connection: 'close', ...(access.status === 401 ? { 'www-authenticate': 'Bearer' } : {}) };
      sendJson(response, access.status, { error: { code: access.code, message: access.message } }, headers);
      return;
    }
    try {
      await this.route(request, response, url);
    } catch (error) {
      this.failures++;
      this.sendError(response, error);
    }
  }

  private async route(request: IncomingMessage, response: ServerResponse, url: RequestTarget): Promise<void> {
    const path = url.pathname;
    const method = request.method ?? 'GET';
    const backend = this.options.backend;

    if (path === '/v1/entries' && method === 'POST') {
      const body = await this.readBody(request);
      return this.sendWrite(response, 201, await this.appendEntry(body, copyOptions(url)));
    }
    if (path === '/v1/batch' && method === 'POST') return this.batch(request, response, url);
    if (path === '/v1/entries' && method === 'GET') return this.sendReplay(response, url);
    if (path === '/v1/kv/get' && method === 'POST') return this.getMany(request, response);
    if (path.startsWith('/v1/kv/')) {
      const key = decodeKey(path.slice('/v1/kv/'.length));
      if (method === 'PUT') {
        const value = await this.readBody(request);
        return this.sendWrite(response, 200, await this.putValue(key, value, copyOptions(url)));
      }
      if (method === 'DELETE') {
        const result = await backend.append({ op: OP_DELETE, key }, copyOptions(url));
        await backend.state.waitApplied(result.seq);
        return this.sendWrite(response, 200, result);
      }
      if (method === 'GET') {
        const value = backend.state.get(key);
        if (!value) throw new LastgaspError('NOT_FOUND', `no key "${key}"`);
        response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': value.length, 'lastgasp-applied-seq': String(backend.state.applied) });
        response.end(value);
        return;
      }
    }
    if (path === '/v1/kv' && method === 'GET') {
      const prefix = url.searchParams.get('prefix') ?? '';
      const limit = positiveInt(url.searchParams.get('limit'), Number.MAX_SAFE_INTEGER);
      const keys = backend.state.keys(prefix, limit);
      return sendJson(response, 200, { keys, count: backend.state.size, digest: backend.state.digest(), appliedSeq: backend.state.applied });
    }
    if (path === '/v1/status' && method === 'GET') return sendJson(response, 200, { ...backend.status(), ready: await backend.readiness(), api: this.counters });
    // Liveness: answering at all shows that the process and its event loop work. Writes are /v1/ready's.
    if (path === '/metrics' && method === 'GET') {
      const text = await this.metricsText();
      response.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
      return void response.end(text);
    }
    if (path === '/v1/health' && method === 'GET') return sendJson(response, 200, { alive: true });
    if (path === '/v1/ready' && method === 'GET') {
      const readiness = await backend.readiness();
      return sendJson(response, readiness.ready ? 200 : 503, readiness);
    }
    if ((path === '/v1/admin/replication/pause' || path === '/v1/admin/replication/resume') && method === 'POST') {
      backend.setReplicationPaused(path.endsWith('/pause'));
      return sendJson(response, 200, { paused: path.endsWith('/pause') });
    }
    throw new LastgaspError('NOT_FOUND', `no route ${method} ${path} (see GET /v1/status; routes: /v1/entries, /v1/batch, /v1/kv/{key}, /v1/kv, /v1/kv/get, /v1/status, /v1/health, /v1/ready, /metrics)`);
  }

  /** POST /v1/batch: one log batch for the whole body; a KV op in it waits until the state has applied it. */
  private async batch(request: IncomingMessage, response: ServerResponse, url: RequestTarget): Promise<void> {
    const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (!BATCH_TYPES.has(type)) {
      request.resume();
      throw new LastgaspError('UNSUPPORTED_MEDIA_TYPE', `POST /v1/batch needs Content-Type application/cbor-seq (CBOR ops one after the other) or application/x-ndjson (JSON lines), got "${type}"`);
    }
    const body = await this.readBody(request, API_BATCH_BODY_BYTES_MAX);
    const parsed = type === 'application/cbor-seq' ? splitCborSeq(body) : parseJsonLines(body);
    if (!parsed.ok) throw new LastgaspError('BAD_REQUEST', `batch item ${parsed.index}: ${parsed.reason}; nothing of the batch was stored`, { index: parsed.index });
    const backend = this.options.backend;
    const result = await backend.appendEncoded(parsed.payloads, copyOptions(url));
    if (parsed.kv) await backend.state.waitApplied(result.lastSeq);
    sendJson(response, 201, { firstSeq: result.firstSeq, lastSeq: result.lastSeq, epoch: result.epoch, count: parsed.payloads.length });
  }

  /**
   * POST /v1/kv/get `{"keys":[...]}`: many values read at one applied seq (one request, one consistent view:
   * nothing is applied between two keys of it). Absent keys are null.
   */
  private async getMany(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await this.readBody(request);
    let keys: unknown;
    try {
      keys = (JSON.parse(new TextDecoder().decode(body)) as { keys?: unknown }).keys;
    } catch {
      throw new LastgaspError('BAD_REQUEST', 'POST /v1/kv/get needs a JSON body {"keys": ["a", "b", ...]}');
    }
    if (!Array.isArray(keys) || keys.length > KV_GET_KEYS_MAX || !keys.every((key) => typeof key === 'string' && validKey(key))) {
      throw new LastgaspError('BAD_REQUEST', `POST /v1/kv/get: "keys" must be a list of at most ${KV_GET_KEYS_MAX} keys (1..${KV_KEY_BYTES_MAX} bytes each)`);
    }
    const state = this.options.backend.state;
    const values: Record<string, string | null> = {};
    for (const key of keys as string[]) {
      const value = state.get(key);
      values[key] = value ? toBase64(value) : null;
    }
    sendJson(response, 200, { values, appliedSeq: state.applied });
  }

  private async sendReplay(response: ServerResponse, url: RequestTarget): Promise<void> {
    const log = this.options.backend.log;
    const from = Math.max(positiveInt(url.searchParams.get('from'), log.firstSeq), log.firstSeq);
    const limit = Math.min(positiveInt(url.searchParams.get('limit'), 1000), REPLAY_LIMIT_MAX);
    const waitMs = Math.min(positiveInt(url.searchParams.get('waitMs'), 0), REPLAY_WAIT_MS_MAX);
    if (waitMs > 0 && from > log.watermarks().committed) await committedOrTimeout(log, from, waitMs, response);
    const entries = from <= log.watermarks().committed ? await log.read(from, { entriesMax: limit, bytesMax: REPLAY_BYTES_MAX }) : [];
    const out = entries.map((entry) => {
      const decoded = decodeOp(entry.payload);
      const base = { seq: entry.seq, epoch: entry.epoch, timestampMs: entry.timestampMs };
      if (!decoded.ok) return { ...base, op: 'unknown', data: toBase64(entry.payload) };
      const op = decoded.op;
      if (op.op === OP_ENTRY) return { ...base, op: 'entry', data: toBase64(op.data) };
      if (op.op === OP_PUT) return { ...base, op: 'put', key: op.key, value: toBase64(op.value) };
      if (op.op === OP_MQTT) return { ...base, op: 'mqtt', topic: op.topic, data: toBase64(op.data), ...(op.props ? { props: jsonProps(op.props) } : {}) };
      return { ...base, op: 'delete', key: op.key };
    });
    const last = entries.at(-1);
    sendJson(response, 200, { entries: out, next: last ? last.seq + 1 : from, committed: log.watermarks().committed });
  }

  private sendWrite(response: ServerResponse, status: number, result: AppendResult): void {
    sendJson(response, status, { seq: result.seq, epoch: result.epoch });
  }

  private readBody(request: IncomingMessage, limit = this.options.bodyBytesMax): Promise<Uint8Array> {
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > limit) {
      request.resume();
      return Promise.reject(new LastgaspError('ENTRY_TOO_LARGE', `request body of ${declared} bytes is over api.bodyBytesMax (${limit})`));
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      request.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) {
          request.destroy();
          reject(new LastgaspError('ENTRY_TOO_LARGE', `request body is over api.bodyBytesMax (${limit})`));
          return;
        }
        chunks.push(chunk);
      });
      // A view, not a copy: a small body comes in one chunk, which is used as it is.
      request.once('end', () => {
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
        resolve(new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
      });
      request.once('error', reject);
    });
  }

  private sendError(response: ServerResponse, error: unknown): void {
    if (response.headersSent) {
      response.destroy();
      return;
    }
    const answer = this.errorAnswer(error);
    sendJson(response, answer.status, answer.body);
  }

  /** A failed request's status and JSON body; an error that is not a typed one is logged. */
  private errorAnswer(error: unknown): { status: number; body: unknown } {
    if (isLastgaspError(error)) {
      const status = STATUS_BY_CODE[error.code] ?? 500;
      if (status === 500) this.options.logger.error('api request failed', { code: error.code, error });
      return { status, body: { error: { code: error.code, message: error.message, ...error.detail } } };
    }
    this.options.logger.error('api request failed unexpectedly', { error });
    return { status: 500, body: { error: { code: 'INTERNAL', message: (error as Error)?.message ?? String(error) } } };
  }
}

/** Resolves once `seq` is committed, after `waitMs`, or when the client goes away, whichever comes first. */
function committedOrTimeout(log: FlashLog, seq: number, waitMs: number, response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      unsubscribe();
      clearTimeout(timer);
      response.off('close', done);
      resolve();
    };
    const unsubscribe = log.onCommit((committed) => {
      if (committed >= seq) done();
    });
    const timer = setTimeout(done, waitMs);
    // The response closes before it was sent only when the client went away.
    response.once('close', done);
  });
}
