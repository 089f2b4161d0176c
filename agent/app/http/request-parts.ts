/**
 * What the API's routes read of a request (its target, a write's copy options, a key, a number) and how they
 * answer in JSON: small pure helpers, shared by the routes behind node:http and by the fast path.
 */
import { Buffer } from 'node:buffer';
import type { ServerResponse } from 'node:http';
import { LastgaspError } from '../../util/index.ts';
import { ACK_AFTER_LEVELS, type AckAfter, type CopyOptions } from '../copy-wait.ts';
import { validKey, type MqttProps } from '../ops.ts';

/** What the routes read of a request's target: its path and its query. */
export type RequestTarget = Pick<URL, 'pathname' | 'search' | 'searchParams'>;

/**
 * A target of letters, digits, '/', '_' and '-' only, not starting with '//' (which URL parsing reads as a
 * host), is its own WHATWG path: it holds nothing URL parsing would change (no dot segment, percent sign,
 * backslash or query). Every write of an application that adds no parameter has such a target; it skips the
 * URL object, a few microseconds and an allocation per request.
 */
const PLAIN_TARGET = /^\/(?!\/)[\w/-]*$/;
/** The empty query of a plain target: routes only read it. */
export const NO_QUERY = new URLSearchParams();

export function requestTarget(raw: string): RequestTarget {
  return PLAIN_TARGET.test(raw) ? { pathname: raw, search: '', searchParams: NO_QUERY } : new URL(raw, 'http://local');
}

/** ?ackAfter= and ?timeoutMs= of a write; undefined when neither is given (the config's default applies). */
export function copyOptions(url: RequestTarget): CopyOptions | undefined {
  // Most writes have no query: not even the URLSearchParams object is made for them.
  if (url.search === '') return undefined;
  const level = url.searchParams.get('ackAfter');
  const timeout = url.searchParams.get('timeoutMs');
  if (level === null && timeout === null) return undefined;
  if (level !== null && !ACK_AFTER_LEVELS.includes(level as AckAfter)) throw new LastgaspError('BAD_REQUEST', `ackAfter "${level}" is not one of ${ACK_AFTER_LEVELS.join(', ')}`);
  const timeoutMs = timeout === null ? undefined : positiveInt(timeout, 0);
  if (timeoutMs === 0) throw new LastgaspError('BAD_REQUEST', 'timeoutMs must be at least 1');
  return { ...(level === null ? {} : { ackAfter: level as AckAfter }), ...(timeoutMs === undefined ? {} : { timeoutMs }) };
}

export function decodeKey(raw: string): string {
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new LastgaspError('BAD_REQUEST', `key "${raw}" is not valid percent-encoding`);
  }
  if (!validKey(key)) throw new LastgaspError('BAD_REQUEST', `key must be 1..512 bytes of UTF-8`);
  return key;
}

export function positiveInt(text: string | null, fallback: number): number {
  if (text === null) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new LastgaspError('BAD_REQUEST', `"${text}" is not a non-negative integer`);
  return value;
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  response.end(text);
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** A journaled message's properties in JSON: correlation data (bytes) as base64. */
export function jsonProps(props: MqttProps): Record<string, unknown> {
  const { correlationData, ...rest } = props;
  return correlationData ? { ...rest, correlationData: toBase64(correlationData) } : rest;
}
