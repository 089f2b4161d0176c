// The API's own HTTP/1.1 codec (agent/app/http/): the server fast path's strict request-head parser and the
// client's response reader. The parser must take only what llhttp (Node's parser) takes and reads the same
// way, so every head it takes in a random-mutation loop is also sent to a real node:http server, which must
// read the same method, target, headers and body. Bytes split at random across reads give the same result as
// in one piece; pipelined requests follow one another; malformed input gives "other" (handed to llhttp) or a
// typed error, never a throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { ResponseReader, encodeRequest, parseSimpleHead, type HeadParse, type ReadResult } from '../../agent/app/http/index.ts';
import { mulberry32 } from '../log/support/random.ts';

const HEAD_MAX = 16 * 1024;
const BODY_MAX = 1024;
const latin1 = (text: string): Uint8Array => Uint8Array.from(text, (char) => char.charCodeAt(0));

/**
 * What ApiClient sends for one 5-byte entry on a Unix socket:
 *   "POST /v1/entries HTTP/1.1\r\n"            request line: method, origin-form target, version
 *   "Host: localhost\r\n"                      required in HTTP/1.1 (RFC 9112 §3.2)
 *   "Content-Type: application/octet-stream\r\n"
 *   "Content-Length: 5\r\n"
 *   "\r\n"                                     end of the head (95 bytes)
 *   "hello"                                    the body
 */
const ENTRY_REQUEST = 'POST /v1/entries HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nhello';

function parse(text: string): HeadParse {
  return parseSimpleHead(latin1(text), 0, HEAD_MAX, BODY_MAX);
}

/** Feed `bytes` in the given pieces, as reads would bring them, carrying scannedTo across calls. */
function parseInPieces(bytes: Uint8Array, cuts: readonly number[]): HeadParse {
  let scanFrom = 0;
  let result: HeadParse = { kind: 'incomplete', scannedTo: 0 };
  for (const cut of [...cuts, bytes.length]) {
    result = parseSimpleHead(bytes.subarray(0, cut), scanFrom, HEAD_MAX, BODY_MAX);
    if (result.kind !== 'incomplete') return result;
    scanFrom = result.scannedTo;
  }
  return result;
}

function randomCuts(length: number, random: () => number): number[] {
  const cuts = Array.from({ length: 1 + Math.floor(random() * 6) }, () => Math.floor(random() * length));
  return [...new Set(cuts)].sort((x, y) => x - y);
}

test('the client\'s request for one entry is taken as it is: method, target, headers, body bounds', () => {
  const result = parse(ENTRY_REQUEST);
  assert.equal(result.kind, 'simple');
  if (result.kind !== 'simple') return;
  assert.deepEqual(result.head, {
    method: 'POST',
    target: '/v1/entries',
    headers: { host: 'localhost', 'content-type': 'application/octet-stream', 'content-length': '5' },
    headBytes: ENTRY_REQUEST.length - 5,
    bodyBytes: 5,
    keepAlive: true,
  });
  const put = parse('PUT /v1/kv/boiler-temp HTTP/1.1\r\nhost:  127.0.0.1:8181 \r\nAuthorization: Bearer abc\r\nConnection: close\r\nX-Other: a\tb\r\n\r\n');
  assert.ok(put.kind === 'simple');
  assert.deepEqual(put.head.headers, { host: '127.0.0.1:8181', authorization: 'Bearer abc' }, 'optional whitespace trimmed, other headers not kept');
  assert.equal(put.head.keepAlive, false);
  assert.equal(put.head.bodyBytes, 0);
});

test('a head split anywhere across reads parses as in one piece, scanned once', () => {
  const bytes = latin1(ENTRY_REQUEST);
  const whole = parse(ENTRY_REQUEST);
  for (let cut = 0; cut < bytes.length; cut++) assert.deepEqual(parseInPieces(bytes, [cut]), whole, `cut at ${cut}`);
  const random = mulberry32(7);
  for (let round = 0; round < 200; round++) assert.deepEqual(parseInPieces(bytes, randomCuts(bytes.length, random)), whole);
  // Byte by byte: each call looks only at the bytes the previous one had not seen.
  const cuts = Array.from({ length: bytes.length - 1 }, (_, index) => index + 1);
  assert.deepEqual(parseInPieces(bytes, cuts), whole);
});

test('pipelined requests are read one after the other from the same bytes', () => {
  const second = 'PUT /v1/kv/k1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\nv1';
  const bytes = latin1(ENTRY_REQUEST + second + 'GET /v1/status HTTP/1.1\r\n\r\n');
  const first = parseSimpleHead(bytes, 0, HEAD_MAX, BODY_MAX);
  assert.ok(first.kind === 'simple');
  const rest = bytes.subarray(first.head.headBytes + first.head.bodyBytes);
  const next = parseSimpleHead(rest, 0, HEAD_MAX, BODY_MAX);
  assert.ok(next.kind === 'simple');
  assert.equal(next.head.target, '/v1/kv/k1');
  assert.equal(String.fromCharCode(...rest.subarray(next.head.headBytes, next.head.headBytes + next.head.bodyBytes)), 'v1');
  const third = parseSimpleHead(rest.subarray(next.head.headBytes + next.head.bodyBytes), 0, HEAD_MAX, BODY_MAX);
  assert.equal(third.kind, 'other', 'a GET goes to node:http');
});

test('anything outside the simple form goes to llhttp, decided as early as the bytes allow', () => {
  const base = (headers: string, start = 'POST /v1/entries HTTP/1.1') => `${start}\r\nHost: localhost\r\n${headers}\r\n`;
  const others: Record<string, string> = {
    'chunked body': base('Transfer-Encoding: chunked\r\n'),
    'Expect: 100-continue': base('Expect: 100-continue\r\nContent-Length: 1\r\n'),
    upgrade: base('Upgrade: websocket\r\nConnection: Upgrade\r\n'),
    'obs-fold': base('X-Folded: a\r\n b\r\n'),
    'bare LF': base('X-A: 1\nX-B: 2\r\n'),
    'bare CR': base('X-A: 1\rX-B: 2\r\n'),
    'NUL in a value': base('X-A: \u0000\r\n'),
    'DEL in a value': base('X-A: \u007f\r\n'),
    'obs-text in a value': base('X-A: caf\u00e9\r\n'),
    'space before the colon': base('Content-Length : 1\r\n'),
    'empty header name': base(': 1\r\n'),
    'two Content-Lengths': base('Content-Length: 1\r\nContent-Length: 1\r\n'),
    'two Hosts': base('Host: localhost\r\n'),
    'a Content-Length that is not digits': base('Content-Length: +1\r\n'),
    'a Content-Length with a comma list': base('Content-Length: 1, 1\r\n'),
    'a tab after a Content-Length (llhttp refuses it; seen in the mutation loop, seed 325553)': base('Content-Length: 1\t\r\n'),
    'a space and a tab after a Content-Length': base('Content-Length: 1 \t\r\n'),
    'a body over the limit': base(`Content-Length: ${BODY_MAX + 1}\r\n`),
    'Connection: Upgrade': base('Connection: Upgrade\r\n'),
    'no Host': 'POST /v1/entries HTTP/1.1\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.0': base('', 'POST /v1/entries HTTP/1.0'),
    'GET': base('', 'GET /v1/status HTTP/1.1'),
    'lower-case method': base('', 'post /v1/entries HTTP/1.1'),
    'a query': base('', 'POST /v1/entries?ackAfter=replica HTTP/1.1'),
    'percent-encoding': base('', 'PUT /v1/kv/a%2Fb HTTP/1.1'),
    'a dot segment': base('', 'PUT /v1/kv/../x HTTP/1.1'),
    'an authority-like target': base('', 'POST //v1/entries HTTP/1.1'),
    'absolute-form': base('', 'POST http://localhost/v1/entries HTTP/1.1'),
    'two spaces': base('', 'POST  /v1/entries HTTP/1.1'),
    'leading empty line': `\r\n${base('')}`,
  };
  for (const [name, text] of Object.entries(others)) assert.equal(parse(text).kind, 'other', name);
  assert.equal(parse('GET ').kind, 'other', 'a GET is handed over from its first bytes');
  assert.equal(parse('POST /v1/entries HTTP/1.1\r\nHost: localhost\r\n').kind, 'incomplete');
  const long = `POST /v1/entries HTTP/1.1\r\nHost: localhost\r\nX-Pad: ${'a'.repeat(HEAD_MAX)}`;
  assert.equal(parse(long).kind, 'other', 'a head at the header size limit is llhttp\'s to refuse (431)');
});

interface Seen {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Send raw bytes to a node:http server on a fresh connection; what it read of the first request, if anything. */
async function llhttpReads(port: number, seen: Seen[], bytes: Uint8Array): Promise<Seen | undefined> {
  seen.length = 0;
  await new Promise<void>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(bytes);
      // Closing our side ends a request the server waits on; its answer (or refusal) ends the connection.
      socket.end();
    });
    socket.resume();
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
  return seen[0];
}

test('every head the fast path takes in a random-mutation loop is read the same way by llhttp', async () => {
  const seen: Seen[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      seen.push({ method: request.method!, url: request.url!, headers: request.headers, body: Buffer.concat(chunks).toString('latin1') });
      response.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const seed = Number(process.env.LASTGASP_HTTP_CODEC_SEED ?? Date.now() % 1_000_000);
  const random = mulberry32(seed);
  const interesting = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x7f, 0x80, 0xff, 0x3a, 0x2f, 0x2c, 0x61, 0x30, 0x25, 0x3f];
  const base = latin1('PUT /v1/kv/k-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nX-Any: v\r\nContent-Length: 3\r\n\r\nabc');
  let taken = 0;
  try {
    for (let round = 0; round < 300; round++) {
      const bytes = Array.from(base);
      for (let edits = 1 + Math.floor(random() * 3); edits > 0; edits--) {
        const at = Math.floor(random() * (bytes.length - 3));
        const kind = random();
        if (kind < 0.4) bytes.splice(at, 0, interesting[Math.floor(random() * interesting.length)]!);
        else if (kind < 0.7) bytes.splice(at, 1);
        else bytes[at] = interesting[Math.floor(random() * interesting.length)]!;
      }
      const mutated = Uint8Array.from(bytes);
      const result = parseSimpleHead(mutated, 0, HEAD_MAX, BODY_MAX);
      if (result.kind !== 'simple') continue;
      taken++;
      const head = result.head;
      const read = await llhttpReads(port, seen, mutated);
      const context = `seed ${seed} round ${round}: ${JSON.stringify(String.fromCharCode(...mutated))}`;
      if (head.headBytes + head.bodyBytes > mutated.length) {
        // A Content-Length grown past the bytes sent (a digit inserted): both wait for the rest of the body,
        // and the connection's end leaves llhttp without a request too.
        assert.equal(read, undefined, `llhttp read a request whose body was not all sent (${context})`);
        continue;
      }
      assert.ok(read, `llhttp refused a head the fast path took (${context})`);
      assert.equal(read.method, head.method, context);
      assert.equal(read.url, head.target, context);
      for (const [name, value] of Object.entries(head.headers)) assert.equal(read.headers[name], value, `${name}: ${context}`);
      assert.equal(read.headers.connection === 'close', !head.keepAlive, context);
      const body = String.fromCharCode(...mutated.subarray(head.headBytes, head.headBytes + head.bodyBytes));
      assert.equal(read.body, body, context);
    }
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  assert.ok(taken > 20, `enough mutated heads were still simple to compare (${taken}, seed ${seed})`);
});

test('random bytes give a parse result, never a throw', () => {
  const random = mulberry32(11);
  for (let round = 0; round < 2000; round++) {
    const bytes = Uint8Array.from({ length: Math.floor(random() * 200) }, () => Math.floor(random() * 256));
    if (random() < 0.5) bytes.set(latin1('POST /').subarray(0, Math.min(6, bytes.length)));
    const result = parseSimpleHead(bytes, 0, HEAD_MAX, BODY_MAX);
    assert.ok(['incomplete', 'simple', 'other'].includes(result.kind));
    const reader = new ResponseReader();
    assert.ok(['incomplete', 'response', 'error'].includes(reader.push(bytes).kind));
    assert.ok(['response', 'error'].includes(new ResponseReader().end().kind));
  }
});

/** Read a response given in pieces; the result of the last push (or of end() when `ended`). */
function readInPieces(text: string, cuts: readonly number[], ended = false): ReadResult {
  const bytes = latin1(text);
  const reader = new ResponseReader();
  let result: ReadResult = { kind: 'incomplete' };
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (cut > from) result = reader.push(bytes.subarray(from, cut));
    from = cut;
    if (result.kind !== 'incomplete') return result;
  }
  return ended ? reader.end() : result;
}

const bodyOf = (result: ReadResult) => (result.kind === 'response' ? String.fromCharCode(...result.body) : undefined);

test('responses: a Content-Length body, a chunked one with extensions and trailers, one to the close, none for 204', () => {
  const agentAnswer = 'HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 20\r\nDate: Tue, 01 Dec 2026 03:00:00 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n{"seq":12,"epoch":3}';
  const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n';
  const random = mulberry32(3);
  for (let round = 0; round < 100; round++) {
    const answer = readInPieces(agentAnswer, randomCuts(agentAnswer.length, random));
    assert.equal(answer.kind, 'response');
    assert.ok(answer.kind === 'response' && answer.head.status === 201 && !answer.head.close && answer.head.keepAliveS === 5 && answer.extraBytes === 0);
    assert.equal(bodyOf(answer), '{"seq":12,"epoch":3}');
    assert.equal(bodyOf(readInPieces(chunked, randomCuts(chunked.length, random))), 'hello, world');
  }
  const toClose = readInPieces('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nbad', [], true);
  assert.ok(toClose.kind === 'response' && toClose.head.close && toClose.head.status === 400);
  assert.equal(bodyOf(toClose), 'bad');
  assert.equal(readInPieces('HTTP/1.1 400 Bad Request\r\n\r\nbad', []).kind, 'incomplete', 'a body without framing runs to the close');
  const empty = readInPieces('HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n', []);
  assert.ok(empty.kind === 'response' && empty.body.length === 0);
  const interim = readInPieces('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', [10, 30]);
  assert.equal(bodyOf(interim), 'ok', 'a 100 Continue is skipped');
  const extra = readInPieces('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1', []);
  assert.ok(extra.kind === 'response' && extra.extraBytes === 8, 'bytes nobody asked for are reported');
  const cut = readInPieces('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok', [], true);
  assert.equal(cut.kind, 'error', 'a body cut by the close is an error');
});

test('malformed responses are errors with the reason, never a throw', () => {
  const bad = [
    'HTTP/2 200 OK\r\n\r\n',
    'HTTP/1.1 20 OK\r\n\r\n',
    'HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
    'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n',
    'HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n',
  ];
  for (const text of bad) {
    const result = readInPieces(text, []);
    assert.equal(result.kind, 'error', JSON.stringify(text));
    assert.ok(result.kind === 'error' && result.reason.length > 0);
  }
  assert.equal(new ResponseReader().push(new Uint8Array(17 * 1024).fill(0x61)).kind, 'error', 'a head with no end is bounded');
});

test('a request is one buffer: head, empty line, body', () => {
  const bytes = encodeRequest('POST /v1/entries HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n', latin1('hi'));
  assert.equal(String.fromCharCode(...bytes), 'POST /v1/entries HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi');
  assert.equal(parse(String.fromCharCode(...bytes)).kind, 'simple');
});
