/**
 * The API server's fast path reads a request itself only when it is in one strict, simple form; everything
 * else goes to Node's HTTP server, whose parser (llhttp) then reads it from its first byte. So this parser
 * never has to get an unusual request right: it only has to be sure that what it takes is plain, and that
 * llhttp would have taken it too and read it the same way. What it takes (RFC 9112 §3, §5):
 *
 *   POST|PUT SP target SP "HTTP/1.1" CRLF
 *   *( name ":" OWS value OWS CRLF )
 *   CRLF
 *
 * with a target of letters, digits, "/", "_" and "-" only (what the routes read as it is, without URL
 * parsing), header names of token characters (§5.1: no space before the colon), values of visible ASCII,
 * spaces and tabs only (no obs-text, no control character), a Host header, at most one of each header the
 * API reads, a Content-Length of digits within the body limit, a Connection of "keep-alive" or "close", and
 * no Transfer-Encoding, Expect or Upgrade. A line folded onto the next (obs-fold), a bare CR or LF, or a head
 * as long as the parser's header limit gives "other": the request, and the connection with it, goes to llhttp.
 *
 * Pure over bytes; never throws.
 */

/** The headers the API reads, as Node's IncomingMessage.headers would hold them (lower-case names). */
export interface SimpleHeaders {
  host?: string;
  origin?: string;
  authorization?: string;
  'content-type'?: string;
  'content-length'?: string;
}

export interface SimpleHead {
  readonly method: 'POST' | 'PUT';
  readonly target: string;
  readonly headers: SimpleHeaders;
  /** Where the body starts: the head's length, its empty line included. */
  readonly headBytes: number;
  readonly bodyBytes: number;
  /** False when the request said `Connection: close`. */
  readonly keepAlive: boolean;
}

export type HeadParse =
  | { kind: 'incomplete'; scannedTo: number }
  | { kind: 'simple'; head: SimpleHead }
  | { kind: 'other'; reason: string };

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
/** The last visible ASCII character (RFC 5234 VCHAR is 0x21..0x7E). */
const VCHAR_LAST = 0x7e;
const HTTP_11 = ' HTTP/1.1';
/** Content-Length digits accepted: 10 digits exceed any body limit, and stay far inside a safe integer. */
const CONTENT_LENGTH_DIGITS_MAX = 10;

/** RFC 9110 §5.6.2 tchar: the characters of a header name. */
const TCHAR = new Uint8Array(128);
for (const char of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[char.charCodeAt(0)] = 1;
/** The characters of a target the fast path takes (http-api.ts PLAIN_TARGET: a path URL parsing leaves as it is). */
const TARGET_CHAR = new Uint8Array(128);
for (const char of '/_-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz') TARGET_CHAR[char.charCodeAt(0)] = 1;

/**
 * The header names the fast path looks at, lower-case: first each header read (a second one of these sends
 * the request to llhttp), then from FOREIGN_FROM those that change how the message is framed or answered
 * (llhttp's business). A line's name is matched against them byte by byte, case folded, without making a
 * string of it: names made, lower-cased and looked up in sets took 2.6 of a simple head's 6.8 µs (this
 * project's VM).
 */
const KNOWN_HEADERS = ['host', 'origin', 'authorization', 'content-type', 'content-length', 'connection', 'transfer-encoding', 'expect', 'upgrade'] as const;
const FOREIGN_FROM = 6;
const KNOWN_HEADER_BYTES = KNOWN_HEADERS.map((name) => Uint8Array.from(name, (char) => char.charCodeAt(0)));

const METHODS = ['POST /', 'PUT /'] as const;

/**
 * Parse the head at the start of `bytes`. `scanFrom` is where an earlier call on a shorter prefix of the same
 * bytes stopped looking for the head's end (its `scannedTo`), so that a head trickled in byte by byte is
 * scanned once, not once per byte. `headBytesMax`: Node's header limit (http.maxHeaderSize), request line
 * included; a head that reaches it goes to llhttp, which answers 431.
 */
export function parseSimpleHead(bytes: Uint8Array, scanFrom: number, headBytesMax: number, bodyBytesMax: number): HeadParse {
  const method = methodOf(bytes);
  if (method === undefined) return { kind: 'other', reason: 'not POST or PUT with an origin-form target' };
  const end = headEnd(bytes, Math.max(scanFrom, 0), headBytesMax);
  if (end < 0) {
    if (bytes.length >= headBytesMax) return { kind: 'other', reason: 'head at the header size limit' };
    return { kind: 'incomplete', scannedTo: Math.max(bytes.length - 3, 0) };
  }
  if (end > headBytesMax) return { kind: 'other', reason: 'head at the header size limit' };
  const lineEnd = requestLineEnd(bytes, method.length);
  if (lineEnd < 0) return { kind: 'other', reason: 'request line not in the simple form' };
  const target = ascii(bytes, method.length - 1, lineEnd - HTTP_11.length);
  const fields = readFields(bytes, lineEnd + 2, end - 2);
  if (typeof fields === 'string') return { kind: 'other', reason: fields };
  const { headers, connection } = fields;
  if (headers.host === undefined) return { kind: 'other', reason: 'no Host header' };
  let keepAlive = true;
  if (connection !== undefined) {
    const token = connection.toLowerCase();
    if (token === 'close') keepAlive = false;
    else if (token !== 'keep-alive') return { kind: 'other', reason: 'a Connection header other than keep-alive or close' };
  }
  const length = headers['content-length'];
  const bodyBytes = length === undefined ? 0 : contentLength(length);
  if (bodyBytes < 0 || bodyBytes > bodyBytesMax) return { kind: 'other', reason: 'a Content-Length that is not digits within the body limit' };
  return { kind: 'simple', head: { method: method === 'POST /' ? 'POST' : 'PUT', target, headers, headBytes: end, bodyBytes, keepAlive } };
}

/** The method prefix the bytes start with (as far as they go), or undefined when they cannot be either. */
function methodOf(bytes: Uint8Array): (typeof METHODS)[number] | undefined {
  for (const method of METHODS) {
    let at = 0;
    while (at < method.length && at < bytes.length && bytes[at] === method.charCodeAt(at)) at++;
    if (at === method.length || at === bytes.length) return method;
  }
  return undefined;
}

/** The offset just past the head's empty line (CRLF CRLF), or -1 when it is not within the first `limit` bytes. */
function headEnd(bytes: Uint8Array, from: number, limit: number): number {
  const last = Math.min(bytes.length, limit + 4) - 4;
  for (let at = from; at <= last; at++) {
    if (bytes[at] === CR && bytes[at + 1] === LF && bytes[at + 2] === CR && bytes[at + 3] === LF) return at + 4;
  }
  return -1;
}

/** The offset of the request line's CR, after checking the target and the version; -1 when not simple. */
function requestLineEnd(bytes: Uint8Array, targetStart: number): number {
  // targetStart is just past the target's leading "/"; "//" would read as an authority in URL parsing.
  let at = targetStart;
  if (bytes[at] === 0x2f) return -1;
  while (at < bytes.length && bytes[at]! < 128 && TARGET_CHAR[bytes[at]!] === 1) at++;
  for (let index = 0; index < HTTP_11.length; index++) {
    if (bytes[at + index] !== HTTP_11.charCodeAt(index)) return -1;
  }
  at += HTTP_11.length;
  return bytes[at] === CR && bytes[at + 1] === LF ? at : -1;
}

/**
 * The header lines between `from` and `to` (the CR of the last line's CRLF excluded: `to` is where the empty
 * line starts). The headers read, or why the head is not simple.
 */
function readFields(bytes: Uint8Array, from: number, to: number): { headers: SimpleHeaders; connection: string | undefined } | string {
  const headers: Record<string, string> = {};
  let connection: string | undefined;
  let at = from;
  while (at < to) {
    if (bytes[at] === SP || bytes[at] === HTAB) return 'a folded header line (obs-fold)';
    let colon = at;
    while (colon < to && bytes[colon]! < 128 && TCHAR[bytes[colon]!] === 1) colon++;
    if (colon === at || bytes[colon] !== COLON) return 'a header name that is not a token followed by ":"';
    let lineEnd = colon + 1;
    while (lineEnd < to && bytes[lineEnd] !== CR) {
      const byte = bytes[lineEnd]!;
      if ((byte < SP && byte !== HTAB) || byte > VCHAR_LAST) return 'a header value with a control character, a bare LF or a non-ASCII byte';
      lineEnd++;
    }
    if (bytes[lineEnd + 1] !== LF) return 'a bare CR in a header line';
    const known = knownHeader(bytes, at, colon);
    if (known >= FOREIGN_FROM) return `a ${KNOWN_HEADERS[known]} header`;
    if (known >= 0) {
      const name = KNOWN_HEADERS[known]!;
      if (headers[name] !== undefined || (name === 'connection' && connection !== undefined)) return `two ${name} headers`;
      if (name === 'content-length' && tabAfterValue(bytes, colon + 1, lineEnd)) return 'a Content-Length with a tab after its value (llhttp answers 400)';
      const value = trimmedValue(bytes, colon + 1, lineEnd);
      if (name === 'connection') connection = value;
      else headers[name] = value;
    }
    at = lineEnd + 2;
  }
  return { headers: headers as SimpleHeaders, connection };
}

/** The index in KNOWN_HEADERS of the token between `from` and `to`, ASCII case folded; -1 for any other name. */
function knownHeader(bytes: Uint8Array, from: number, to: number): number {
  const length = to - from;
  for (let index = 0; index < KNOWN_HEADER_BYTES.length; index++) {
    const name = KNOWN_HEADER_BYTES[index]!;
    if (name.length !== length) continue;
    let at = 0;
    for (; at < length; at++) {
      const byte = bytes[from + at]!;
      // ASCII case folding, A-Z only, as toLowerCase does on the token characters a name may hold.
      if ((byte >= 0x41 && byte <= 0x5a ? byte | 0x20 : byte) !== name[at]) break;
    }
    if (at === length) return index;
  }
  return -1;
}

/** The value between `from` and `to` without the optional whitespace around it (RFC 9110 §5.5). */
function trimmedValue(bytes: Uint8Array, from: number, to: number): string {
  while (from < to && (bytes[from] === SP || bytes[from] === HTAB)) from++;
  while (to > from && (bytes[to - 1] === SP || bytes[to - 1] === HTAB)) to--;
  return ascii(bytes, from, to);
}

/**
 * A tab in the whitespace after a value. RFC 9110 allows it, llhttp does not after a Content-Length's digits
 * (it allows spaces there, and tabs before): such a request is node:http's to refuse.
 */
function tabAfterValue(bytes: Uint8Array, from: number, to: number): boolean {
  while (from < to && (bytes[from] === SP || bytes[from] === HTAB)) from++;
  while (from < to && bytes[from] !== SP && bytes[from] !== HTAB) from++;
  for (; from < to; from++) if (bytes[from] === HTAB) return true;
  return false;
}

/** Digits only (RFC 9110 §8.6), as llhttp reads them; -1 otherwise. */
function contentLength(text: string): number {
  if (text.length === 0 || text.length > CONTENT_LENGTH_DIGITS_MAX) return -1;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x30 || code > 0x39) return -1;
  }
  return Number(text);
}

/** Bytes already checked to be ASCII, as a string. */
function ascii(bytes: Uint8Array, from: number, to: number): string {
  return String.fromCharCode.apply(null, bytes.subarray(from, to) as unknown as number[]);
}
