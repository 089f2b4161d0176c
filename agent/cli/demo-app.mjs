// The demo's application (`lastgasp demo`): a counter kept in the agent's key-value state and raised every
// DEMO_APP_INTERVAL_MS through the local API, at most DEMO_APP_TICKS times. The agent starts it on the node
// that leads (config `app:`) and stops it before that node stands down; started on the sibling after a
// takeover, it reads the counter the first node's application left and goes on from there. It prints one
// JSON line per acknowledged write on its stdout, which is the agent's, where the demo reads it.
import { readFileSync } from 'node:fs';

const KEY = 'demo/app-counter';
const api = `http://${process.env.LASTGASP_API}/v1/kv/${encodeURIComponent(KEY)}`;
const headers = { authorization: `Bearer ${readFileSync(process.env.LASTGASP_API_TOKEN_FILE, 'utf8').trim()}` };
const node = process.env.LASTGASP_NODE;
const ticks = Number(process.env.DEMO_APP_TICKS ?? Number.MAX_SAFE_INTEGER);
const intervalMs = Number(process.env.DEMO_APP_INTERVAL_MS ?? 100);
const agentPid = Number(process.env.LASTGASP_AGENT_PID);

let stopping = false;
let busy = false;
const print = (line) => process.stdout.write(`${JSON.stringify({ event: 'demo-app', node, ...line })}\n`);

// SIGTERM (the agent stands down): a write under way is finished and reported first, so that every write
// the agent acknowledged is one the demo heard about.
process.on('SIGTERM', () => {
  stopping = true;
  if (!busy) process.exit(0);
});

async function readCounter() {
  const response = await fetch(api, { headers });
  if (response.status === 404) return 0;
  if (!response.ok) throw new Error(`GET ${KEY}: HTTP ${response.status}`);
  return Number(await response.text());
}

async function main() {
  const read = await readCounter();
  print({ what: 'started', read, epoch: Number(process.env.LASTGASP_EPOCH) });
  let counter = read;
  for (let tick = 0; tick < ticks && !stopping; tick++) {
    // The agent's death does not reach this process by itself (it runs in its own process group).
    if (process.ppid !== agentPid) {
      print({ what: 'orphaned', ppid: process.ppid, agentPid });
      return;
    }
    busy = true;
    const response = await fetch(api, { method: 'PUT', headers: { ...headers, 'content-type': 'application/octet-stream' }, body: String(counter + 1) }).catch(() => undefined);
    if (response?.ok) {
      const { seq } = await response.json();
      counter += 1;
      print({ what: 'write', counter, seq });
    } else print({ what: 'refused', status: response?.status, body: response ? await response.text() : 'no answer' });
    busy = false;
    if (stopping) process.exit(0);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  // Done: idle until stopped (or orphaned), as a service would.
  setInterval(() => process.ppid !== agentPid && process.exit(0), 500);
}

main().catch((error) => {
  print({ what: 'error', message: error.message });
  process.exit(1);
});
