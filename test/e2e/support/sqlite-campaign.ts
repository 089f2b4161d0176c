// A seeded campaign against application-transparent SQLite, with real parts: one mosquitto, two agents each
// on its own BMS simulator (socat pty), and an unmodified application started by the agent that leads: Debian's
// Python sqlite3 (test/fixtures/sqlite-app.py, sqlite-campaign.test.ts) or a Node application on libsql
// (test/fixtures/sqlite-app.mjs, sqlite-campaign-node.test.ts), which behave alike: random transactions with
// a schema change every 40, an index every 55 and a VACUUM every 70, a passive checkpoint of their own every
// 17, and the sorted dump's digest journaled after every commit. At random moments, one of:
//   - kill-agent: SIGKILL of the primary's agent; its application writes on alone, perhaps checkpoints
//     with TRUNCATE from a second connection of its own SQLite library (resetting the WAL the agent no longer
//     pins), then is SIGKILLed or stopped (its last close checkpoints and removes the WAL); perhaps a torn
//     frame at the WAL's end; the agent restarts and leads again (no silence takeover: only a handoff moves
//     the lead);
//   - kill-app: SIGKILL of the application's process group; the agent starts it again;
//   - brownout: mains lost and a brownout from the primary's BMS, the flush, the handoff, the power cut
//     (its agent SIGKILLed), and the sibling leads; the old primary comes back as a standby.
// After each step:
//   - the application, wherever it starts, finds its database intact (integrity_check) with every
//     transaction it committed (one more at most after a SIGKILL between a COMMIT and its journal line);
//   - after a brownout, the handoff names the database's last commit and the successor starts with exactly
//     the old primary's database (dump compared), holding every transaction committed there;
//   - the standby's database, read while it follows, always passes integrity_check, holds transactions 1..k
//     and equals the application's database as of commit k (the journaled digest), and reaches the last
//     transaction the application had committed when the check began.
// Every digest is the sha256 of Python's sorted iterdump: test/sqlite/support/python.ts reads the copies, and
// both applications journal that same digest (the Node one builds the dump with the same SQL), so the checks
// do not depend on which application wrote the digest they compare.
// The steps (each fault once in a seeded order, then any) and the seed (LASTGASP_SQLITE_SEED; default: random,
// printed) extend or replay a run: the seed decides the faults, their moments and choices; the application's
// own transactions and the processes' timing are not replayed.
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startMosquitto } from '../../support/mosquitto.ts';
import { createPtyPair, type PtyPair } from '../../support/pty.ts';
import { startBmsSim, type BmsSim } from '../../support/bms-sim.ts';
import { startAgent, writeAgentConfig, type AgentProcess } from '../../support/agents.ts';
import { killAll } from '../../support/processes.ts';
import { tempDir, waitFor } from '../../support/ports.ts';
import { mulberry32, randomInt } from '../../log/support/random.ts';
import { dump, journalLines, run, type Dump } from '../../sqlite/support/python.ts';
import { writeTornFrame } from '../../sqlite/support/torn-frame.ts';

/** The unmodified application a campaign runs, and how a second connection of its library checkpoints. */
export interface CampaignApplication {
  /** Its name in the test's title (`Python sqlite3`, `Node libsql`). */
  readonly name: string;
  /** app.command: it reads the APP_* variables of test/fixtures/sqlite-app.py. */
  readonly command: readonly string[];
  /** A process that checkpoints `db` with TRUNCATE through the application's SQLite library and prints the result. */
  readonly truncate: (db: string) => readonly [string, readonly string[]];
}

export interface CampaignRun {
  readonly steps: number;
  /** The variable that sets `steps`, named in the replay hints. */
  readonly stepsVariable: string;
  readonly seed: number;
}

const FAULTS = ['kill-agent', 'kill-app', 'brownout'] as const;
type Fault = (typeof FAULTS)[number];
/** Transactions the application commits after a step before the standby is checked. */
const COMMITS_AFTER_STEP = 15;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Line = { node: string; pid: number; event: string; txid?: number; integrity?: string; dumpSha?: string; txids?: number[] };

interface Node {
  readonly name: string;
  readonly configFile: string;
  readonly api: string;
  readonly db: string;
  readonly sim: BmsSim;
  readonly pty: PtyPair;
  agent: AgentProcess;
}

function range(first: number, last: number): number[] {
  return Array.from({ length: Math.max(0, last - first + 1) }, (_, index) => first + index);
}

/** The applications' journal (every node's, one file): starts, commits with their digests, stops. */
class Journal {
  constructor(readonly file: string) {}

  lines(): Line[] {
    return journalLines<Line>(this.file);
  }

  starts(node: string): Line[] {
    return this.lines().filter((line) => line.node === node && line.event === 'start');
  }

  /** The last transaction any application journaled as committed (the history is one line: no set-asides). */
  lastTxid(): number {
    return Math.max(0, ...this.lines().filter((line) => line.event === 'commit').map((line) => line.txid!));
  }

  /** The digest the application journaled right after committing `txid`. */
  digestAt(txid: number): string | undefined {
    return this.lines().find((line) => line.event === 'commit' && line.txid === txid)?.dumpSha;
  }

  /** The application's next start on `node`, after the `known` starts seen before. */
  nextStart(node: string, known: number): Promise<Line> {
    return waitFor(`the application to start on ${node}`, () => this.starts(node)[known], 60_000);
  }

  commitsBy(pid: number): number {
    return this.lines().filter((line) => line.pid === pid && line.event === 'commit').length;
  }
}

/**
 * A dump of the standby's copy, read like any reader would: it waits out an apply (a locked database), and a
 * copy that does not exist yet (the standby has not applied the first snapshot).
 */
async function readCopy(db: string): Promise<Dump | undefined> {
  if (!existsSync(db)) return undefined;
  try {
    return await dump(db);
  } catch (error) {
    if (/database is locked/.test(String((error as { stderr?: string }).stderr ?? error))) return undefined;
    throw error;
  }
}

/** The application found its database intact, with every transaction journaled before (one more at most). */
function checkStart(start: Line, lastBefore: number, where: string): void {
  assert.equal(start.integrity, 'ok', `${where}: integrity_check`);
  const found = start.txids!.length;
  assert.deepEqual(start.txids, range(1, found), `${where}: transactions 1..${found}, none missing`);
  assert.ok(found >= lastBefore && found <= lastBefore + 1, `${where}: ${found} transactions, ${lastBefore} journaled as committed`);
}

/** The campaign as one test of the calling file, with `application` on both nodes. */
export function sqliteCampaign(application: CampaignApplication, options: CampaignRun): void {
  after(killAll);
  test(`SQLite campaign, ${application.name}: ${options.steps} seeded faults (seed ${options.seed}) never leave a corrupt, behind or different copy`, { timeout: 30 * 60_000 }, (t) => campaign(t, application, options));
}

async function campaign(t: TestContext, application: CampaignApplication, { steps, stepsVariable, seed }: CampaignRun): Promise<void> {
  assert.ok(Number.isInteger(steps) && steps >= 1, `${stepsVariable} must be a positive integer`);
  assert.ok(Number.isInteger(seed) && seed >= 0, 'LASTGASP_SQLITE_SEED must be a non-negative integer');
  t.diagnostic(`replay with LASTGASP_SQLITE_SEED=${seed} ${stepsVariable}=${steps}`);
  const random = mulberry32(seed);
  const dir = await tempDir(`sqlite-campaign-${application.name.split(' ')[0]!.toLowerCase()}`);
  const journal = new Journal(join(dir.path, 'journal.ndjson'));
  const broker = await startMosquitto(dir.path);
  const nodes: Node[] = [];
  const txDelayMs = String(1 + randomInt(random, 5));
  const setUp = async (name: string) => {
    const pty = await createPtyPair(dir.path, `bms-${name}`);
    const sim = await startBmsSim(['--protocol', 'bridge', '--serial', pty.devicePath]);
    const db = join(dir.path, `${name}-db`, 'app.db');
    await mkdir(join(dir.path, `${name}-db`));
    const config = await writeAgentConfig(dir.path, name, {
      group: 'sqlcampaign',
      role: name === 'gw-a' ? 'primary' : 'standby',
      siblings: [name === 'gw-a' ? 'gw-b' : 'gw-a'],
      replication: { brokers: [{ url: broker.url }] },
      power: { source: { kind: 'bridge', transport: { type: 'serial', path: pty.hostPath } }, onBatteryDebounceMs: 0, flushBudgetMs: 30_000, handoffAckTimeoutMs: 5000, cutDelayMs: 200 },
      app: {
        command: [...application.command],
        env: { DB: db, APP_JOURNAL: journal.file, APP_TX_DELAY_MS: txDelayMs, APP_DUMP_EACH: '1', APP_ROWS_MAX: '150', APP_CHECKPOINT_EVERY: '17', APP_CHECKPOINT_MODE: 'PASSIVE' },
        stopTimeoutMs: 5000,
        restartDelayMs: 200,
        stableMs: 1000,
        // A small checkpointFrames: the agent's own checkpoints (and the WAL resets after them) come often.
        sqlite: [{ path: db, name: 'app', checkpointFrames: 200 }],
      },
    });
    return { name, configFile: config.file, api: config.api, db, sim, pty };
  };
  const parts = [await setUp('gw-a'), await setUp('gw-b')];
  let primary: Node;
  let standby: Node;
  const summary: string[] = [];

  /** The application on the primary commits `count` more transactions in its current life. */
  const commits = async (count: number) => {
    const start = journal.starts(primary.name).at(-1) ?? (await journal.nextStart(primary.name, 0));
    const base = journal.commitsBy(start.pid);
    await waitFor(`${count} commits on ${primary.name}`, () => {
      if (primary.agent.process.child.exitCode !== null) throw new Error(`${primary.name}'s agent exited:\n${primary.agent.process.output().slice(-3000)}`);
      return journal.commitsBy(start.pid) >= base + count ? true : undefined;
    }, 60_000);
    return start;
  };

  const killAgent = async (): Promise<string> => {
    const { pid } = await commits(1);
    const known = journal.starts(primary.name).length;
    process.kill(primary.agent.process.child.pid!, 'SIGKILL');
    await sleep(100 + randomInt(random, 900));
    // A second connection of the application checkpoints with nothing pinning the WAL: it resets it.
    const truncates: string[] = [];
    for (let count = random() < 0.7 ? 1 + randomInt(random, 2) : 0; count > 0; count--) {
      const [program, args] = application.truncate(primary.db);
      const { stdout } = await run(program, [...args]);
      truncates.push(stdout.trim());
      await sleep(randomInt(random, 300));
    }
    const signal = random() < 0.5 ? 'SIGKILL' : 'SIGTERM';
    process.kill(-pid, signal);
    // Its output pipes are the agent's: the harness sees the agent gone once the application is too.
    await primary.agent.stop('SIGKILL');
    const torn = random() < 0.6 ? await writeTornFrame(primary.db + '-wal', random) : undefined;
    const lastBefore = journal.lastTxid();
    primary.agent = await startAgent(primary.name, primary.configFile, primary.api);
    await primary.agent.waitForEvent('role', (line) => line.role === 'primary', 30_000);
    checkStart(await journal.nextStart(primary.name, known), lastBefore, `${primary.name} after its agent's restart`);
    return `kill-agent ${primary.name}: app ${signal}, TRUNCATE checkpoints ${JSON.stringify(truncates)}, torn frame ${JSON.stringify(torn ?? 'none')}`;
  };

  const killApp = async (): Promise<string> => {
    const { pid } = await commits(1 + randomInt(random, 20));
    const known = journal.starts(primary.name).length;
    const exits = primary.agent.events().filter((line) => line.event === 'app-exit').length;
    process.kill(-pid, 'SIGKILL');
    await waitFor('the agent to see its application exit', () => (primary.agent.events().filter((line) => line.event === 'app-exit').length > exits ? true : undefined), 30_000);
    const lastBefore = journal.lastTxid();
    checkStart(await journal.nextStart(primary.name, known), lastBefore, `${primary.name} after its application's SIGKILL`);
    return `kill-app ${primary.name}`;
  };

  const brownout = async (): Promise<string> => {
    const { pid } = await commits(1 + randomInt(random, 20));
    const [from, to] = [primary, standby];
    const known = journal.starts(to.name).length;
    const cuts = from.sim.lines().filter((line) => line.event === 'power-cut').length;
    from.sim.send('ac off');
    if (random() < 0.5) await sleep(randomInt(random, 400));
    from.sim.send('brownout');
    const flush = await from.agent.waitForEvent('flush-start', () => true, 30_000);
    const handoff = await from.agent.waitForEvent('handoff', () => true, 30_000);
    await waitFor('the power cut', () => (from.sim.lines().filter((line) => line.event === 'power-cut').length > cuts ? true : undefined), 30_000);
    await from.agent.stop('SIGKILL');
    const takeover = await to.agent.waitForEvent('takeover', () => true, 30_000);
    const start = await journal.nextStart(to.name, known);
    const committedThere = journal.lines().filter((line) => line.pid === pid && line.event === 'commit').map((line) => line.txid!);
    const sqlite = handoff.sqlite as Record<string, number> | undefined;
    assert.ok(sqlite && sqlite.app! > 0, 'the handoff names the database\'s last commit');
    assert.deepEqual(flush.sqliteCommits, sqlite, 'the flush and the handoff name the same commit');
    assert.deepEqual(takeover.handoffSqlite, sqlite, `${to.name} took over knowing that commit`);
    assert.ok((handoff.lastSeq as number) >= sqlite.app!, 'the handoff covers it');
    assert.ok(journal.lines().some((line) => line.pid === pid && line.event === 'term'), `${from.name}'s application was stopped before the handoff`);
    const left = await dump(from.db);
    assert.equal(start.integrity, 'ok', `${to.name}'s database at the application's start`);
    assert.deepEqual(start.txids, range(1, committedThere.at(-1)!), `every transaction ${from.name}'s application committed is on ${to.name}, and nothing else`);
    assert.equal(start.dumpSha, left.dumpSha, `${to.name}'s database equals ${from.name}'s`);
    from.sim.send('ac on');
    from.agent = await startAgent(from.name, from.configFile, from.api);
    await from.agent.waitForEvent('role', (line) => line.role === 'standby', 30_000);
    [primary, standby] = [to, from];
    return `brownout ${from.name} → ${to.name} at txid ${committedThere.at(-1)} (sqlite seq ${sqlite.app})`;
  };

  /** The standby's copy, read while it follows: intact, a prefix, equal to the application's at its commit. */
  const checkStandby = async (where: string) => {
    await commits(COMMITS_AFTER_STEP);
    const target = journal.lastTxid();
    let reads = 0;
    const reached = await waitFor(`${standby.name}'s copy to reach transaction ${target}`, async () => {
      const copy = await readCopy(standby.db);
      if (!copy) return undefined;
      reads++;
      const last = copy.txids.at(-1) ?? 0;
      assert.equal(copy.integrity, 'ok', `${where}: ${standby.name}'s copy passes integrity_check`);
      assert.deepEqual(copy.txids, range(1, last), `${where}: ${standby.name}'s copy holds transactions 1..${last}`);
      // A commit the application was killed before journaling has no digest to compare: read again.
      const digest = journal.digestAt(last);
      if (digest !== undefined) assert.equal(copy.dumpSha, digest, `${where}: ${standby.name}'s copy equals the application's database as of transaction ${last}`);
      return last >= target && digest !== undefined ? last : undefined;
    }, 60_000, 200);
    return `${standby.name} at ${reached} (${reads} reads)`;
  };

  // Each fault once first, in a seeded order (Fisher-Yates), then any.
  const order: Fault[] = [...FAULTS];
  for (let index = order.length - 1; index > 0; index--) {
    const other = randomInt(random, index + 1);
    [order[index], order[other]] = [order[other]!, order[index]!];
  }
  let failed = false;
  try {
    for (const part of parts) nodes.push({ ...part, agent: await startAgent(part.name, part.configFile, part.api) });
    [primary, standby] = nodes as [Node, Node];
    await commits(30);
    summary.push(`start: ${await checkStandby('before any fault')}`);
    t.diagnostic(`sqlite campaign (${application.name}) seed ${seed}: ${summary[0]}`);
    for (let step = 0; step < steps; step++) {
      const fault: Fault = step < order.length ? order[step]! : FAULTS[randomInt(random, FAULTS.length)]!;
      const startedMs = Date.now();
      try {
        const what = fault === 'kill-agent' ? await killAgent() : fault === 'kill-app' ? await killApp() : await brownout();
        const checked = await checkStandby(`step ${step + 1} (${fault})`);
        summary.push(`step ${step + 1}: ${what}; ${checked}; ${Date.now() - startedMs} ms`);
        t.diagnostic(`sqlite campaign (${application.name}) ${summary.at(-1)!}`);
      } catch (error) {
        failed = true;
        throw new Error(`seed ${seed}, step ${step + 1} (${fault}) failed (replay: LASTGASP_SQLITE_SEED=${seed} ${stepsVariable}=${step + 1}): ${(error as Error).message}\n${summary.join('\n')}`, { cause: error });
      }
    }
    const statuses = await Promise.all(nodes.map(async (node) => ((await node.agent.client.status()).sqlite as unknown[])[0]));
    t.diagnostic(`sqlite status: ${JSON.stringify(statuses)}`);
  } finally {
    // An application outlives its agent's SIGKILL (and holds its output pipes): end every one still running
    // first, each checked to be this test's (its environment names this test's directory), not a reused pid.
    for (const line of journal.lines().filter((entry) => entry.event === 'start')) {
      try {
        if (readFileSync(`/proc/${line.pid}/environ`, 'utf8').includes(`DB=${dir.path}/`)) process.kill(-line.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    for (const node of nodes) await node.agent.stop('SIGKILL');
    for (const part of parts) {
      await part.sim.stop();
      await part.pty.close();
    }
    await broker.stop();
    // A failed run keeps its files (both databases, the journal, the agents' data) for a look.
    if (failed) t.diagnostic(`kept for a look: ${dir.path}`);
    else await dir.remove();
  }
}
