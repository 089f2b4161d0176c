// The API client's kept-alive connections (client.ts), against a real Node HTTP server that announces its
// keep-alive timeout as the agent's API does (api.idleTimeoutMs, "Keep-Alive: timeout=N").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { ApiClient } from '../../agent/app/index.ts';

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
