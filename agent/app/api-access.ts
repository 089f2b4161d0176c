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
 * A pure function of the request's method, path and headers, so that every rule is tested without sockets.
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

export type AccessDecision = { ok: true } | { ok: false; status: number; code: ErrorCode; message: string };

/** The one route a liveness probe may call without a token: it tells nothing but "alive". */
export const LIVENESS_PATH = '/v1/health';

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH']);
/** Batch bodies (POST /v1/batch) are CBOR sequences or JSON lines: neither is a type a page may send unasked. */
const WRITE_CONTENT_TYPES = new Set(['application/octet-stream', 'application/json', 'application/cbor-seq', 'application/x-ndjson', 'application/jsonl']);

export function checkAccess(policy: AccessPolicy, method: string, path: string, headers: IncomingHttpHeaders): AccessDecision {
  const host = headers.host;
  if (!host || !hostAllowed(policy, host)) {
    return refuse(403, 'FORBIDDEN', `Host "${host ?? ''}" is not this agent (DNS-rebinding defence); clients must use a loopback name or address, or one listed in api.allowedHosts`);
  }
  const origin = headers.origin;
  if (origin !== undefined && !policy.allowedOrigins.includes(origin)) {
    return refuse(403, 'FORBIDDEN', `requests from web pages (Origin "${origin}") are refused unless the origin is listed in api.allowedOrigins`);
  }
  if (policy.token !== undefined && !(method === 'GET' && path === LIVENESS_PATH)) {
    const presented = bearer(headers.authorization);
    if (presented === undefined || !sameSecret(presented, policy.token)) {
      return refuse(401, 'UNAUTHORIZED', 'missing or wrong bearer token: send "Authorization: Bearer <token>" with the token from the agent\'s api.tokenFile');
    }
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

function sameSecret(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function refuse(status: number, code: ErrorCode, message: string): AccessDecision {
  return { ok: false, status, code, message };
}
