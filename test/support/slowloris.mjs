// A slowloris client for tests: holds `connections` connections open to host:port, each sending the start of
// a request and then one more header line every `trickleMs`, never finishing it. A connection the server
// closes is opened again after `reconnectMs`, so the pressure lasts until the process is killed. Every
// other connection comes from one greedy address (127.0.0.2); the rest are spread over `sources` more
// (127.0.0.3, ...), as a botnet's would be.
// Prints one JSON line per second: {"event":"slowloris","open":N,"opened":N,"closed":N}.
import { connect } from 'node:net';

const { host, port, connections, sources, trickleMs, reconnectMs } = JSON.parse(process.argv[2]);
let open = 0;
let opened = 0;
let closed = 0;

function start(index) {
  const socket = connect({ host, port, localAddress: index % 2 === 0 ? '127.0.0.2' : `127.0.0.${3 + ((index >> 1) % sources)}` });
  let timer;
  socket.on('connect', () => {
    open++;
    opened++;
    socket.write(`POST /v1/entries HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/octet-stream\r\n`);
    timer = setInterval(() => socket.write(`X-Slow-${opened}: 1\r\n`), trickleMs);
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    if (timer) {
      clearInterval(timer);
      open--;
    }
    closed++;
    setTimeout(() => start(index), reconnectMs);
  });
}

for (let index = 0; index < connections; index++) start(index);
setInterval(() => console.log(JSON.stringify({ event: 'slowloris', open, opened, closed })), 1000);
