// The API's fast path (agent/app/http/fast-path.ts) on a real agent process, over raw connections: simple
// single writes pipelined with requests it does not take (a chunked body, Expect: 100-continue, an obs-fold
// header, malformed framing) are all answered in order on the same connection, those by node:http (llhttp's
// own answers: a 100 Continue, a reassembled chunked body, its bare 400), and every acknowledged entry holds
// the bytes sent. A refused request is answered without its body being read; a trickled head gets Node's 408
// after api.headersTimeoutMs; an idle kept-alive connection is closed after api.idleTimeoutMs.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { ResponseReader, type ReadResult } from '../../agent/app/http/index.ts';
import { splitHostPort } from '../../agent/util/index.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../support/agents.ts';
import { killAll } from '../support/processes.ts';
import { freePort, tempDir } from '../support/ports.ts';

after(killAll);

type Response = Extract<ReadResult, { kind: 'response' }>;

/** A raw connection to the API: bytes out as given, responses read one after the other. */
class Raw {
  private pending: Uint8Array[] = [];
  private waiter: (() => void) | undefined;
  ended = false;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Uint8Array) => {
      this.pending.push(chunk);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  static open(address: string): Promise<Raw> {
    const { host, port } = splitHostPort(address);
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port }, () => resolve(new Raw(socket)));
      socket.once('error', reject);
    });
  }

  send(text: string): void {
    this.socket.write(Buffer.from(text, 'latin1'));
  }

  /** The next response; bytes after it stay for the next call. */
  async next(): Promise<Response> {
    const reader = new ResponseReader();
    for (;;) {
      while (this.pending.length > 0) {
        const chunk = this.pending.shift()!;
        const result = reader.push(chunk);
        if (result.kind === 'error') throw new Error(`unreadable response: ${result.reason}`);
        if (result.kind === 'response') {
          if (result.extraBytes > 0) this.pending.unshift(chunk.subarray(chunk.length - result.extraBytes));
          return result;
        }
      }
      if (this.ended) {
        const result = reader.end();
        if (result.kind === 'response') return result;
        throw new Error('the connection closed before a response');
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
  }

  /** Raw bytes up to and including `marker` (taken off what the next call reads). */
  async upTo(marker: string): Promise<string> {
    for (;;) {
      const text = Buffer.concat(this.pending).toString('latin1');
      const at = text.indexOf(marker);
      if (at >= 0) {
        this.pending = [Buffer.from(text.slice(at + marker.length), 'latin1')];
        return text.slice(0, at + marker.length);
      }
      if (this.ended) throw new Error(`the connection closed before ${JSON.stringify(marker)}; got ${JSON.stringify(text)}`);
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
  }

  /** The raw bytes that arrive until the connection closes. */
  async rest(): Promise<string> {
    while (!this.ended) {
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
    return Buffer.concat(this.pending.splice(0)).toString('latin1');
  }
}

const json = (response: Response) => JSON.parse(Buffer.from(response.body).toString('utf8')) as { seq: number; error?: { code: string } };

async function withAgent(run: (agent: AgentProcess, token: string) => Promise<void>): Promise<void> {
  const dir = await tempDir('e2e-fast-path');
  const broker = await startMosquitto(dir.path);
  const config = await writeAgentConfig(dir.path, 'gw-a', { group: 'fast', role: 'primary', replication: { brokers: [{ url: broker.url }], durability: 'broker' }, api: { listen: `127.0.0.1:${await freePort()}`, headersTimeoutMs: 1000, idleTimeoutMs: 1000 } });
  const agent = await startAgent('gw-a', config.file, JSON.parse(readFileSync(config.file, 'utf8')).api.listen);
  try {
    await run(agent, readFileSync(join(dir.path, 'gw-a', 'api.token'), 'utf8').trim());
  } finally {
    await agent.stop();
    await broker.stop();
    await dir.remove();
  }
}

/** A request in the fast path's simple form. */
function simple(method: 'POST' | 'PUT', target: string, token: string, body: string): string {
  return `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
}

async function entryData(agent: AgentProcess, seq: number): Promise<string> {
  const page = await agent.client.entries(seq, 1);
  return Buffer.from(String(page.entries[0]!.data), 'base64').toString('latin1');
}

test('requests the fast path does not take get node:http\'s answers, in order, on the same connection', async () => {
  await withAgent(async (agent, token) => {
    const raw = await Raw.open(agent.api);
    const chunked = `POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n2\r\ntw\r\n1\r\no\r\n0\r\n\r\n`;
    // Four requests in one write: two the fast path serves, a chunked one it hands to node:http with the
    // bytes after it, and a simple one that node:http now serves too.
    raw.send(simple('POST', '/v1/entries', token, 'one') + simple('PUT', '/v1/kv/k-1', token, 'v1') + chunked + simple('POST', '/v1/entries', token, 'three'));
    const answers = [await raw.next(), await raw.next(), await raw.next(), await raw.next()];
    assert.deepEqual(answers.map((answer) => answer.head.status), [201, 200, 201, 201]);
    const seqs = answers.map((answer) => json(answer).seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'answered in the order asked');
    assert.equal(await entryData(agent, seqs[0]!), 'one');
    assert.equal(await entryData(agent, seqs[2]!), 'two', 'the chunked body, reassembled by llhttp');
    assert.equal(await entryData(agent, seqs[3]!), 'three');
    assert.equal(new TextDecoder().decode(await agent.client.get('k-1')), 'v1');

    // Expect: 100-continue on a fresh connection: only node:http sends the interim answer.
    const expecting = await Raw.open(agent.api);
    expecting.send(simple('POST', '/v1/entries', token, 'a') + `POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n`);
    assert.equal((await expecting.next()).head.status, 201);
    assert.equal(await expecting.upTo('\r\n\r\n'), 'HTTP/1.1 100 Continue\r\n\r\n');
    expecting.send('four');
    const continued = await expecting.next();
    assert.equal(continued.head.status, 201);
    assert.equal(await entryData(agent, json(continued).seq), 'four');
    raw.socket.destroy();
    expecting.socket.destroy();
  });
});

test('a simple request trickled in small pieces, and a bare LF in a head, are read as llhttp reads them', async () => {
  await withAgent(async (agent, token) => {
    const raw = await Raw.open(agent.api);
    raw.socket.setNoDelay(true);
    const request = simple('POST', '/v1/entries', token, 'trickled body');
    for (let at = 0; at < request.length; at += 7) {
      raw.send(request.slice(at, at + 7));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const answer = await raw.next();
    assert.equal(answer.head.status, 201);
    assert.equal(await entryData(agent, json(answer).seq), 'trickled body');
    // Line ends of a bare LF never end a head in the simple form: handed over at once, not left to time out.
    raw.send('POST /v1/entries HTTP/1.1\nHost: 127.0.0.1\n');
    assert.equal(await raw.rest(), 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  });
});

test('malformed input after simple requests gets llhttp\'s 400 and the connection closed; the agent serves on', async () => {
  await withAgent(async (agent, token) => {
    const malformed = {
      'obs-fold': `POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Folded: a\r\n b\r\nContent-Length: 1\r\n\r\nx`,
      'a Content-Length that is not a number': `POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1x\r\n\r\nx`,
      'both framings': `POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      'a bare LF and a NUL': `POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\nX: \u0000\nContent-Length: 1\r\n\r\nx`,
      garbage: '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003',
    };
    for (const [name, bytes] of Object.entries(malformed)) {
      const raw = await Raw.open(agent.api);
      raw.send(simple('POST', '/v1/entries', token, name) + bytes);
      const first = await raw.next();
      assert.equal(first.head.status, 201, name);
      assert.equal(await entryData(agent, json(first).seq), name);
      assert.equal(await raw.rest(), 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n', `${name}: node:http's own refusal`);
    }
    assert.equal((await agent.client.append(new TextEncoder().encode('after'))).seq > 0, true);
  });
});

test('fast path limits: a refused request is not read, a trickled head gets a 408, an idle connection is closed', async () => {
  await withAgent(async (agent, token) => {
    // A foreign Host is refused on its head: the answer comes although the body never does.
    const foreign = await Raw.open(agent.api);
    foreign.send(`POST /v1/entries HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n`);
    const refused = await foreign.next();
    assert.equal(refused.head.status, 403);
    assert.equal(json(refused).error?.code, 'FORBIDDEN');
    assert.ok(refused.head.close);
    await foreign.rest();

    const wrongToken = await Raw.open(agent.api);
    wrongToken.send(simple('POST', '/v1/entries', 'not-the-token', 'x'));
    const unauthorized = await wrongToken.next();
    assert.equal(unauthorized.head.status, 401);
    assert.equal(json(unauthorized).error?.code, 'UNAUTHORIZED');
    await wrongToken.rest();

    // A head that never ends, after a first request (a first one is cut by the listener's first-request
    // deadline instead): Node's 408 after headersTimeoutMs (1 s here), then the close.
    const slow = await Raw.open(agent.api);
    slow.send(simple('POST', '/v1/entries', token, 'before the trickle'));
    assert.equal((await slow.next()).head.status, 201);
    slow.send(`POST /v1/entries HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    const trickle = setInterval(() => slow.socket.write('X-Slow: 1\r\n'), 200);
    try {
      assert.equal(await slow.rest(), 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    } finally {
      clearInterval(trickle);
    }

    // A kept-alive connection left idle is closed by the agent after idleTimeoutMs (and Node's one-second grace).
    const idle = await Raw.open(agent.api);
    idle.send(simple('POST', '/v1/entries', token, 'then idle'));
    const answer = await idle.next();
    assert.equal(answer.head.status, 201);
    assert.equal(answer.head.keepAliveS, 1, 'the Keep-Alive timeout announced as Node announces it');
    const openedMs = Date.now();
    assert.equal(await idle.rest(), '');
    assert.ok(Date.now() - openedMs >= 1000, 'not before idleTimeoutMs');

    const counters = (await agent.client.status()).api as { apiRefused: number; apiFastPathRequests: number; apiFastPathHandovers: number };
    assert.ok(counters.apiRefused >= 2, 'the fast path\'s refusals are counted');
    assert.ok(counters.apiFastPathRequests >= 2, 'the simple writes were the fast path\'s');
    assert.ok(counters.apiFastPathHandovers >= 1, 'the status request\'s connection was handed over');
  });
});
