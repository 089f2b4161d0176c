/**
 * The API client's side of HTTP/1.1 (RFC 9112): a request as one buffer, and a strict reader of the one
 * response each request gets. The client sends one request at a time per connection, so the reader holds at
 * most one response; bytes after it on the same connection are a protocol error (the server sent something
 * nobody asked for) and end the connection.
 *
 * Bodies are framed as §6.3 says: a 1xx, 204 or 304 has none, then Transfer-Encoding: chunked, then one
 * Content-Length, else the body runs to the connection's end. A response that breaks the grammar, or holds
 * two different Content-Lengths, or both framings, is refused with the reason (never a throw).
 *
 * Pure over bytes; the connection's shell (client-pool.ts) feeds it what each read brings.
 */

export interface ResponseHead {
  readonly status: number;
  /** The server asked to close the connection after this response (Connection: close, or HTTP/1.0). */
  readonly close: boolean;
  /** The server's Keep-Alive timeout in seconds, when it announced one. */
  readonly keepAliveS: number | undefined;
}

export type ReadResult =
  | { kind: 'incomplete' }
  | { kind: 'response'; head: ResponseHead; body: Uint8Array; extraBytes: number }
  | { kind: 'error'; reason: string };

const CR = 0x0d;
const LF = 0x0a;
/** A response head longer than this is refused: the agent's are a few hundred bytes (Node's own client limit is 16 KiB). */
export const RESPONSE_HEAD_BYTES_MAX = 16 * 1024;
/** Chunk-size lines are hex digits, at most this many (2^52 bytes is past any body a client takes). */
const CHUNK_SIZE_DIGITS_MAX = 13;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/;
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*((?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)[\t ]*$/;
const KEEP_ALIVE_TIMEOUT = /(?:^|[,;\s])timeout=(\d+)/i;

/** Encode a request: `head` is the request line and header lines, each ending in CRLF, without the empty line. */
export function encodeRequest(head: string, body: Uint8Array | undefined): Uint8Array {
  const headBytes = head.length + 2;
  const out = new Uint8Array(headBytes + (body?.length ?? 0));
  for (let index = 0; index < head.length; index++) out[index] = head.charCodeAt(index);
  out[head.length] = CR;
  out[head.length + 1] = LF;
  if (body) out.set(body, headBytes);
  return out;
}

type Framing = { kind: 'length'; bytes: number } | { kind: 'chunked' } | { kind: 'close' };

/** One response, read from the bytes of a connection as they come. */
export class ResponseReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private head: ResponseHead | undefined;
  private framing: Framing | undefined;
  private bodyStart = 0;
  /** Chunked bodies: where the next chunk-size line starts, and the chunks' data so far. */
  private chunkAt = 0;
  private readonly chunkData: Uint8Array[] = [];

  /** A request with no body in its answer whatever the headers say (RFC 9112 §6.3 rule 1 covers HEAD). */
  constructor(private readonly headRequest = false) {}

  /** Take the next bytes the connection read. */
  push(bytes: Uint8Array): ReadResult {
    this.chunks.push(bytes);
    this.buffered += bytes.length;
    return this.read(false);
  }

  /** The connection ended: a body that runs to the close is complete, anything else is cut short. */
  end(): ReadResult {
    const result = this.read(true);
    if (result.kind !== 'incomplete') return result;
    return { kind: 'error', reason: this.head ? 'the connection closed in the middle of the response body' : 'the connection closed before a complete response head' };
  }

  private read(ended: boolean): ReadResult {
    const bytes = this.joined();
    if (!this.head) {
      const parsed = parseHead(bytes, this.headRequest);
      if (parsed.kind !== 'head') return parsed;
      // An interim 1xx answer (100 Continue) is skipped: the real one follows.
      if (parsed.head.status < 200) {
        this.chunks = [bytes.subarray(parsed.bodyStart)];
        this.buffered = bytes.length - parsed.bodyStart;
        return this.buffered > 0 ? this.read(ended) : { kind: 'incomplete' };
      }
      this.head = parsed.head;
      this.framing = parsed.framing;
      this.bodyStart = parsed.bodyStart;
      this.chunkAt = parsed.bodyStart;
    }
    const framing = this.framing!;
    if (framing.kind === 'length') {
      const end = this.bodyStart + framing.bytes;
      if (bytes.length < end) return { kind: 'incomplete' };
      return { kind: 'response', head: this.head, body: bytes.subarray(this.bodyStart, end), extraBytes: bytes.length - end };
    }
    if (framing.kind === 'close') return ended ? { kind: 'response', head: this.head, body: bytes.subarray(this.bodyStart), extraBytes: 0 } : { kind: 'incomplete' };
    return this.readChunks(bytes);
  }

  /** RFC 9112 §7.1: chunk-size [ext] CRLF data CRLF ..., then 0 CRLF, trailers, CRLF. */
  private readChunks(bytes: Uint8Array): ReadResult {
    for (;;) {
      const lineEnd = crlf(bytes, this.chunkAt);
      if (lineEnd < 0) return bytes.length - this.chunkAt > RESPONSE_HEAD_BYTES_MAX ? { kind: 'error', reason: 'a chunk-size line without an end' } : { kind: 'incomplete' };
      const line = latin1(bytes, this.chunkAt, lineEnd);
      const match = /^([0-9A-Fa-f]{1,13})(?:[\t ]*;[\t\x20-\x7e]*)?$/.exec(line);
      if (!match || match[1]!.length > CHUNK_SIZE_DIGITS_MAX) return { kind: 'error', reason: `a malformed chunk-size line "${line.slice(0, 40)}"` };
      const size = parseInt(match[1]!, 16);
      if (size === 0) return this.readTrailers(bytes, lineEnd + 2);
      const dataEnd = lineEnd + 2 + size;
      if (bytes.length < dataEnd + 2) return { kind: 'incomplete' };
      if (bytes[dataEnd] !== CR || bytes[dataEnd + 1] !== LF) return { kind: 'error', reason: 'chunk data not followed by CRLF' };
      this.chunkData.push(bytes.subarray(lineEnd + 2, dataEnd));
      this.chunkAt = dataEnd + 2;
    }
  }

  private readTrailers(bytes: Uint8Array, from: number): ReadResult {
    let at = from;
    for (;;) {
      const lineEnd = crlf(bytes, at);
      if (lineEnd < 0) return { kind: 'incomplete' };
      if (lineEnd === at) break;
      if (!HEADER_LINE.test(latin1(bytes, at, lineEnd))) return { kind: 'error', reason: 'a malformed trailer line' };
      at = lineEnd + 2;
    }
    const size = this.chunkData.reduce((sum, chunk) => sum + chunk.length, 0);
    const body = new Uint8Array(size);
    let offset = 0;
    for (const chunk of this.chunkData) {
      body.set(chunk, offset);
      offset += chunk.length;
    }
    return { kind: 'response', head: this.head!, body, extraBytes: bytes.length - at - 2 };
  }

  /** Everything read so far as one array (copied only when more than one read brought it). */
  private joined(): Uint8Array {
    if (this.chunks.length === 1) return this.chunks[0]!;
    const out = new Uint8Array(this.buffered);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    this.chunks = [out];
    return out;
  }
}

type HeadParse = { kind: 'incomplete' } | { kind: 'error'; reason: string } | { kind: 'head'; head: ResponseHead; framing: Framing; bodyStart: number };

function parseHead(bytes: Uint8Array, headRequest: boolean): HeadParse {
  const end = headEnd(bytes);
  if (end < 0) return bytes.length > RESPONSE_HEAD_BYTES_MAX ? { kind: 'error', reason: `a response head over ${RESPONSE_HEAD_BYTES_MAX} bytes` } : { kind: 'incomplete' };
  const lines = latin1(bytes, 0, end - 4).split('\r\n');
  const status = STATUS_LINE.exec(lines[0]!);
  if (!status) return { kind: 'error', reason: `a malformed status line "${lines[0]!.slice(0, 60)}"` };
  const code = Number(status[2]);
  let close = status[1] === '0';
  let keepAliveS: number | undefined;
  let length: number | undefined;
  let chunked = false;
  for (const line of lines.slice(1)) {
    const header = HEADER_LINE.exec(line);
    if (!header) return { kind: 'error', reason: `a malformed header line "${line.slice(0, 60)}"` };
    const name = header[1]!.toLowerCase();
    const value = header[2]!;
    if (name === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== Number(value))) return { kind: 'error', reason: `a bad or second Content-Length "${value}"` };
      length = Number(value);
    } else if (name === 'transfer-encoding') {
      if (value.toLowerCase() !== 'chunked' || chunked) return { kind: 'error', reason: `a Transfer-Encoding other than one "chunked" ("${value}")` };
      chunked = true;
    } else if (name === 'connection') {
      const tokens = value.toLowerCase().split(',').map((token) => token.trim());
      if (tokens.includes('close')) close = true;
      else if (tokens.includes('keep-alive')) close = false;
    } else if (name === 'keep-alive') {
      const timeout = KEEP_ALIVE_TIMEOUT.exec(value);
      if (timeout) keepAliveS = Number(timeout[1]);
    }
  }
  if (chunked && length !== undefined) return { kind: 'error', reason: 'both Transfer-Encoding and Content-Length' };
  const head: ResponseHead = { status: code, close, keepAliveS };
  if (headRequest || code < 200 || code === 204 || code === 304) return { kind: 'head', head, framing: { kind: 'length', bytes: 0 }, bodyStart: end };
  const framing: Framing = chunked ? { kind: 'chunked' } : length !== undefined ? { kind: 'length', bytes: length } : { kind: 'close' };
  // A body read to the connection's end leaves the connection unusable after it.
  return { kind: 'head', head: framing.kind === 'close' ? { ...head, close: true } : head, framing, bodyStart: end };
}

function headEnd(bytes: Uint8Array): number {
  const last = Math.min(bytes.length, RESPONSE_HEAD_BYTES_MAX + 4) - 4;
  for (let at = 0; at <= last; at++) {
    if (bytes[at] === CR && bytes[at + 1] === LF && bytes[at + 2] === CR && bytes[at + 3] === LF) return at + 4;
  }
  return -1;
}

/** The offset of the next CRLF from `from`, or -1. */
function crlf(bytes: Uint8Array, from: number): number {
  for (let at = from; at + 1 < bytes.length; at++) {
    if (bytes[at] === CR && bytes[at + 1] === LF) return at;
  }
  return -1;
}

function latin1(bytes: Uint8Array, from: number, to: number): string {
  let text = '';
  // In slices: String.fromCharCode takes its arguments on the stack.
  for (let at = from; at < to; at += 8192) text += String.fromCharCode.apply(null, bytes.subarray(at, Math.min(to, at + 8192)) as unknown as number[]);
  return text;
}
