// The API client's kept-alive connections (client.ts), against a real Node HTTP server that announces its
// keep-alive timeout as the agent's API does (api.idleTimeoutMs, "Keep-Alive: timeout=N").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../agent/app/index.ts';
import type { LastgaspError } from '../../agent/util/index.ts';

/** Long enough that the client's timer (a second before it) fires first even on a loaded machine. */
const SERVER_IDLE_MS = 3000;

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

test('the client closes an idle connection before the server would, so no write is sent on a closing one', async () => {
  const connections: Array<{ peerEndedFirst: boolean; closed: Promise<void> }> = [];
  let seq = 0;
  const server = createServer({ keepAliveTimeout: SERVER_IDLE_MS }, (request, response) => {
    request.resume();
    request.once('end', () => {
      const body = JSON.stringify({ seq: ++seq, epoch: 1 });
      response.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      response.end(body);
    });
  });
  server.on('connection', (socket: Socket) => {
    const connection = { peerEndedFirst: false, closed: new Promise<void>((resolve) => socket.once('close', () => resolve())) };
    // 'end' is the client's FIN; a socket the server destroys on its own timeout sees no 'end' first.
    socket.once('end', () => (connection.peerEndedFirst = true));
    connections.push(connection);
  });
  const port = await listen(server);
  const client = new ApiClient({ address: `127.0.0.1:${port}`, token: 'unused-by-this-server' });
  try {
    assert.deepEqual(await client.append(new Uint8Array([1])), { seq: 1, epoch: 1 });
    assert.equal(connections.length, 1);
    await connections[0]!.closed;
    assert.equal(connections[0]!.peerEndedFirst, true, 'the client, not the server, closed the idle connection');
    // The next write opens a fresh connection and succeeds.
    assert.deepEqual(await client.append(new Uint8Array([2])), { seq: 2, epoch: 1 });
    assert.equal(connections.length, 2);
  } finally {
    client.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A node:http server answering each request with `answer`; the connections it saw. */
async function serve(answer: (request: import('node:http').IncomingMessage, response: import('node:http').ServerResponse) => void): Promise<{ port: number; connections: Socket[]; close: () => Promise<void> }> {
  const connections: Socket[] = [];
  const server = createServer((request, response) => {
    request.resume();
    request.once('end', () => answer(request, response));
  });
  server.on('connection', (socket: Socket) => connections.push(socket));
  const port = await listen(server);
  return {
    port,
    connections,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test('at most socketsMax connections: a burst waits for a free one, every request answered', async () => {
  let seq = 0;
  let inFlight = 0;
  let inFlightMax = 0;
  const server = await serve((_request, response) => {
    inFlightMax = Math.max(inFlightMax, ++inFlight);
    setTimeout(() => {
      inFlight--;
      const body = JSON.stringify({ seq: ++seq, epoch: 1 });
      response.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      response.end(body);
    }, 5);
  });
  const client = new ApiClient({ address: `127.0.0.1:${server.port}`, token: 't', socketsMax: 3 });
  try {
    const results = await Promise.all(Array.from({ length: 30 }, (_, index) => client.append(new Uint8Array([index]))));
    assert.deepEqual(results.map((result) => result.seq).sort((x, y) => x - y), Array.from({ length: 30 }, (_, index) => index + 1));
    assert.ok(server.connections.length <= 3, `${server.connections.length} connections`);
    assert.ok(inFlightMax <= 3);
  } finally {
    client.close();
    await server.close();
  }
});

test('Connection: close and chunked answers from node:http are read; the next request opens a new connection', async () => {
  const server = await serve((request, response) => {
    if (request.url === '/v1/status') {
      // No Content-Length: node:http sends the body chunked.
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('{"role":');
      response.end('"primary"}');
      return;
    }
    const body = JSON.stringify({ seq: 1, epoch: 1 });
    response.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
    response.end(body);
  });
  const client = new ApiClient({ address: `127.0.0.1:${server.port}`, token: 't' });
  try {
    assert.deepEqual(await client.status(), { role: 'primary' });
    assert.deepEqual(await client.append(new Uint8Array([1])), { seq: 1, epoch: 1 });
    assert.deepEqual(await client.append(new Uint8Array([2])), { seq: 1, epoch: 1 });
    assert.equal(server.connections.length, 2, 'the chunked answer kept its connection; the one that said close did not');
  } finally {
    client.close();
    await server.close();
  }
});

test('transport failures are typed: a garbled answer, a connection closed before the answer, no answer in time', async () => {
  const replies = ['HTTP/1.1 2OO OK\r\n\r\n', undefined, 'silence'];
  let index = 0;
  const server = createNetServer((socket) => {
    const reply = replies[index++];
    socket.once('data', () => {
      if (reply === undefined) socket.destroy();
      else if (reply !== 'silence') socket.write(reply);
    });
  });
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  const client = new ApiClient({ address: `127.0.0.1:${port}`, token: 't', timeoutMs: 600 });
  try {
    await assert.rejects(client.append(new Uint8Array([1])), (error: NodeJS.ErrnoException) => error.code === 'HPE_INVALID_RESPONSE' && /status line/.test(error.message));
    await assert.rejects(client.append(new Uint8Array([1])), (error: NodeJS.ErrnoException) => error.code === 'ECONNRESET');
    await assert.rejects(client.append(new Uint8Array([1])), (error: NodeJS.ErrnoException) => error.code === 'ETIMEDOUT' && /no answer in 600 ms/.test(error.message));
  } finally {
    client.close();
    await new Promise((resolve) => server.close(resolve));
  }
  const refused = new ApiClient({ address: `127.0.0.1:${port}`, token: 't' });
  await assert.rejects(refused.append(new Uint8Array([1])), (error: NodeJS.ErrnoException) => error.code === 'ECONNREFUSED');
  refused.close();
});

test('a token file read empty or half written is not kept: the next call reads it again and is let in', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lastgasp-client-token-'));
  const file = join(dir, 'api.token');
  const seen: Array<string | undefined> = [];
  const server = await serve((request, response) => {
    seen.push(request.headers.authorization);
    const body = JSON.stringify({ seq: seen.length, epoch: 1 });
    response.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });
  const client = new ApiClient({ address: `127.0.0.1:${server.port}`, tokenFile: file });
  try {
    await assert.rejects(client.append(new Uint8Array([1])), (error: LastgaspError) => error.code === 'UNAUTHORIZED' && /cannot read the API token/.test(error.message));
    await writeFile(file, '');
    await assert.rejects(client.append(new Uint8Array([1])), (error: LastgaspError) => error.code === 'UNAUTHORIZED' && /is empty/.test(error.message));
    await writeFile(file, 'abc\u0001def\n');
    await assert.rejects(client.append(new Uint8Array([1])), /cannot go into an HTTP header/);
    await writeFile(file, 'the-whole-token-at-last\n');
    assert.deepEqual(await client.append(new Uint8Array([1])), { seq: 1, epoch: 1 });
    assert.deepEqual(seen, ['Bearer the-whole-token-at-last'], 'nothing was sent before the token was usable');
    // Once usable it is kept: the file is read once.
    await writeFile(file, 'changed-afterwards\n');
    assert.deepEqual(await client.append(new Uint8Array([2])), { seq: 2, epoch: 1 });
    assert.equal(seen[1], 'Bearer the-whole-token-at-last');
  } finally {
    client.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
