/**
 * Who may call the local API, decided per request before any route runs (issue 9):
 *
 * - `Host` must name a loopback host or one listed in api.allowedHosts. A page whose DNS name an attacker
 *   re-points at 127.0.0.1 (DNS rebinding) sends its own name there, so it is refused.
 * - A request carrying `Origin` comes from a browser page; it is refused unless that origin is listed.
 * - Writes must say `Content-Type: application/octet-stream` or `application/json` (a batch: a CBOR
 *   sequence or JSON lines). A browser sends a
 *   cross-origin request without asking first (no CORS preflight) only with text/plain, form or multipart
 *   types, so such a request cannot reach a write even where the Origin check would not see it.
 * - On TCP, `Authorization: Bearer <token>` on every request except the liveness probe, compared in
 *   constant time (SHA-256 of both sides, then timingSafeEqual: equal lengths, no early exit).
 *
 * `checkAccess` is a pure function of the request's method, path and headers, so that every rule is tested
 * without sockets. The server asks an `AccessGate`, which decides by the same rules but keeps two costs off
 * the hot path: the token's digest is computed once, and a keep-alive connection that has shown the token is
 * not hashed again while it sends the same Authorization header (two SHA-256 per request were an eighth of
 * the server's CPU per request).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { isLoopbackHost, splitHostPort, type ErrorCode } from '../util/index.ts';

export interface AccessPolicy {
  /** Required on every request but the liveness probe when set (TCP); undefined on a Unix socket. */
  readonly token: string | undefined;
  /** Host names accepted besides loopback (lower case, without port). */
  readonly allowedHosts: readonly string[];
  /** Origins accepted (exact `scheme://host[:port]`). */
  readonly allowedOrigins: readonly string[];
}

/** The headers the rules read (Node's IncomingMessage.headers, or what the fast path read of a request). */
export type AccessHeaders = Pick<IncomingHttpHeaders, 'host' | 'origin' | 'authorization' | 'content-type'>;

export type AccessDecision = { ok: true } | { ok: false; status: number; code: ErrorCode; message: string };

/** The one route a liveness probe may call without a token: it tells nothing but "alive". */
export const LIVENESS_PATH = '/v1/health';

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH']);
/** Batch bodies (POST /v1/batch) are CBOR sequences or JSON lines: neither is a type a page may send unasked. */
const WRITE_CONTENT_TYPES = new Set(['application/octet-stream', 'application/json', 'application/cbor-seq', 'application/x-ndjson', 'application/jsonl']);

export function checkAccess(policy: AccessPolicy, method: string, path: string, headers: AccessHeaders): AccessDecision {
  const expected = policy.token === undefined ? undefined : sha256(policy.token);
  return decide(policy, method, path, headers, (header) => bearerMatches(header, expected!));
}

/**
 * The rules of checkAccess for a server: the token's digest made once, and per connection (a socket) the
 * Authorization header that already passed. A connection is one client: a header equal to the one it showed
 * before is the token again, so it is compared as a string without hashing. Only a connection that has shown
 * the right token has such a header, so the plain comparison tells nothing to one that has not; any other
 * header is hashed and compared in constant time, and one that fails does not replace the one that passed.
 */
export class AccessGate {
  private readonly expected: Uint8Array | undefined;
  private readonly shown = new WeakMap<object, string>();

  constructor(readonly policy: AccessPolicy) {
    this.expected = policy.token === undefined ? undefined : sha256(policy.token);
  }

  check(method: string, path: string, headers: AccessHeaders, connection: object): AccessDecision {
    return decide(this.policy, method, path, headers, (header) => {
      if (header !== undefined && this.shown.get(connection) === header) return true;
      if (!bearerMatches(header, this.expected!)) return false;
      this.shown.set(connection, header!);
      return true;
    });
  }
}

function decide(policy: AccessPolicy, method: string, path: string, headers: AccessHeaders, tokenShown: (authorization: string | undefined) => boolean): AccessDecision {
  const host = headers.host;
  if (!host || !hostAllowed(policy, host)) {
    return refuse(403, 'FORBIDDEN', `Host "${host ?? ''}" is not this agent (DNS-rebinding defence); clients must use a loopback name or address, or one listed in api.allowedHosts`);
  }
  const origin = headers.origin;
  if (origin !== undefined && !policy.allowedOrigins.includes(origin)) {
    return refuse(403, 'FORBIDDEN', `requests from web pages (Origin "${origin}") are refused unless the origin is listed in api.allowedOrigins`);
  }
  if (policy.token !== undefined && !(method === 'GET' && path === LIVENESS_PATH) && !tokenShown(headers.authorization)) {
    return refuse(401, 'UNAUTHORIZED', 'missing or wrong bearer token: send "Authorization: Bearer <token>" with the token from the agent\'s api.tokenFile');
  }
  if (WRITE_METHODS.has(method)) {
    const type = (headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (!WRITE_CONTENT_TYPES.has(type)) {
      return refuse(415, 'UNSUPPORTED_MEDIA_TYPE', `${method} needs Content-Type application/octet-stream or application/json (application/cbor-seq or application/x-ndjson for /v1/batch; got "${type}")`);
    }
  }
  return { ok: true };
}

function hostAllowed(policy: AccessPolicy, header: string): boolean {
  const { host } = splitHostPort(header.trim());
  const name = host.toLowerCase();
  return isLoopbackHost(name) || policy.allowedHosts.includes(name);
}

function bearer(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : undefined;
}

/** SHA-256 of both sides, then timingSafeEqual: equal lengths, no early exit whatever was presented. */
function bearerMatches(header: string | undefined, expected: Uint8Array): boolean {
  const presented = bearer(header);
  return presented !== undefined && timingSafeEqual(sha256(presented), expected);
}

function sha256(text: string): Uint8Array {
  return createHash('sha256').update(text).digest();
}

function refuse(status: number, code: ErrorCode, message: string): AccessDecision {
  return { ok: false, status, code, message };
}
