/**
 * `lastgasp quarantine list|export|replay`: what a node set aside when it came back behind a newer leader
 * (a silence takeover, or an incomplete handoff), read from its quarantine files through the log's tools
 * (read-only, safe beside a running agent), and put back on the group's current primary through its API.
 *
 * Provenance of a replayed write: it is written anew (new epoch and seq on the primary) exactly as it was
 * (the same key and value, the same opaque data), and for each one a key-value record
 * `lastgasp/replayed/<epoch>-<seq>` (the original position) is put, holding JSON with where it came from and
 * the seq it got. The application's keys keep their names, the record can be listed by prefix, and a second
 * replay of the same file skips what already has a record.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ApiClient } from '../app/index.ts';
import { decodeOp, OP_DELETE, OP_ENTRY, OP_MQTT, OP_PUT } from '../app/ops.ts';
import { inspectLog, readQuarantineFile } from '../log/index.ts';
import { closest } from '../util/index.ts';
import { API_TARGET_OPTIONS, apiClientOptions } from './status.ts';
import { parseCommand, UsageError, type CommandSpec, type Io, type ParsedCommand } from './io.ts';

/** Where a replayed write's provenance record lives: one key per original (epoch, seq). */
export const REPLAY_RECORD_PREFIX = 'lastgasp/replayed/';

const HELP = `Usage: lastgasp quarantine <list|export|replay> DATA_DIR [options]

The writes a node set aside (quarantined) when it returned behind a newer leader: after a silence
takeover, or after a handoff that went out incomplete. DATA_DIR is that node's dataDir (or its log
directory). Reading is read-only and safe while the agent runs.

  list DATA_DIR [--json]                      Each quarantine file, and each entry in it: original
                                              epoch/seq, time, and the operation (put, delete, entry).
  export DATA_DIR [--format jsonl|raw] [--out DIR]
                                              jsonl (default): one JSON object per entry on stdout,
                                              values base64. raw: each entry's payload as stored (a CBOR
                                              op) into DIR/<epoch>-<seq>.cbor.
  replay DATA_DIR (--config FILE | --api ADDR [--token-file FILE]) [--ca FILE]
                                              Write each key-value op and opaque entry again on the
                                              running primary (a new seq), with a provenance record
                                              ${REPLAY_RECORD_PREFIX}<epoch>-<seq> per write; writes that already
                                              have one are skipped. The target is the primary's config
                                              (its api.listen and token) or its address.`;

interface QuarantinedEntry {
  readonly file: string;
  readonly epoch: number;
  readonly seq: number;
  readonly timestampMs: number;
  readonly payload: Uint8Array;
}

const QUARANTINE: CommandSpec = {
  help: HELP,
  options: { json: { type: 'boolean' }, format: { type: 'string' }, out: { type: 'string' }, ...API_TARGET_OPTIONS },
  positionals: { min: 2, max: 2, names: 'list|export|replay and DATA_DIR' },
};

export async function quarantineCommand(argv: readonly string[], io: Io): Promise<number> {
  const args = parseCommand(argv, QUARANTINE);
  const [command, dataDir] = args.positionals as [string, string];
  if (command !== 'list' && command !== 'export' && command !== 'replay') {
    const close = closest(command, ['list', 'export', 'replay']);
    throw new UsageError(`unknown command "${command}"${close ? ` (did you mean ${close}?)` : ''} (expected list, export or replay)`);
  }
  const format = args.choice('format', ['jsonl', 'raw'] as const, 'jsonl');
  const entries = await quarantined(dataDir);
  if (command === 'list') return list(entries, args.has('json'), io);
  if (command === 'export') return exportEntries(entries, format, args.string('out'), io);
  return replay(entries, args, io);
}

/** Every entry of every quarantine file of the log under `dataDir`, files in name (time) order. */
async function quarantined(dataDir: string): Promise<QuarantinedEntry[]> {
  const logDir = (await isDir(join(dataDir, 'log'))) ? join(dataDir, 'log') : dataDir;
  const report = await inspectLog(logDir);
  const out: QuarantinedEntry[] = [];
  for (const { file } of [...report.quarantine].sort((x, y) => x.file.localeCompare(y.file))) {
    if (!file.endsWith('.log')) continue;
    for (const entry of await readQuarantineFile(file)) out.push({ file: basename(file), ...entry });
  }
  return out;
}

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true;
}

/** The entry as JSON: its position, time and operation, with values and data in base64. */
function describe(entry: QuarantinedEntry): Record<string, unknown> {
  const base = { file: entry.file, epoch: entry.epoch, seq: entry.seq, timestampMs: entry.timestampMs };
  const decoded = decodeOp(entry.payload);
  if (!decoded.ok) return { ...base, op: 'undecodable', reason: decoded.reason, payload: base64(entry.payload) };
  const op = decoded.op;
  if (op.op === OP_PUT) return { ...base, op: 'put', key: op.key, value: base64(op.value) };
  if (op.op === OP_DELETE) return { ...base, op: 'delete', key: op.key };
  return { ...base, op: 'entry', data: base64(op.data) };
}

function list(entries: readonly QuarantinedEntry[], json: boolean, io: Io): number {
  if (json) {
    io.stdout(JSON.stringify({ entries: entries.map(describe) }));
    return 0;
  }
  if (entries.length === 0) io.stdout('no quarantined entries');
  let file = '';
  for (const entry of entries) {
    if (entry.file !== file) {
      file = entry.file;
      const inFile = entries.filter((candidate) => candidate.file === file);
      io.stdout(`${file}: ${inFile.length} entries, seq ${inFile[0]!.seq}..${inFile.at(-1)!.seq}`);
    }
    const described = describe(entry);
    const what = described.op === 'put' || described.op === 'delete' ? `${String(described.op)} ${String(described.key)}` : String(described.op);
    io.stdout(`  epoch ${entry.epoch} seq ${entry.seq}  ${new Date(entry.timestampMs).toISOString()}  ${what} (${entry.payload.length} bytes)`);
  }
  return 0;
}

async function exportEntries(entries: readonly QuarantinedEntry[], format: 'jsonl' | 'raw', out: string | undefined, io: Io): Promise<number> {
  if (format === 'jsonl') {
    for (const entry of entries) io.stdout(JSON.stringify(describe(entry)));
    return 0;
  }
  if (!out) throw new UsageError('--format raw needs --out DIR');
  await mkdir(out, { recursive: true });
  for (const entry of entries) await writeFile(join(out, `${entry.epoch}-${entry.seq}.cbor`), entry.payload);
  io.stderr(`${entries.length} payloads written to ${out}`);
  return 0;
}

async function replay(entries: readonly QuarantinedEntry[], options: ParsedCommand, io: Io): Promise<number> {
  const client = new ApiClient({ ...(await apiClientOptions(options)), timeoutMs: 10_000 });
  let replayed = 0;
  let skipped = 0;
  const refused: string[] = [];
  try {
    for (const entry of entries) {
      const recordKey = `${REPLAY_RECORD_PREFIX}${entry.epoch}-${entry.seq}`;
      if ((await client.get(recordKey)) !== undefined) {
        skipped++;
        continue;
      }
      const decoded = decodeOp(entry.payload);
      if (!decoded.ok) {
        refused.push(`epoch ${entry.epoch} seq ${entry.seq}: not an operation this agent writes (${decoded.reason}); left out`);
        continue;
      }
      const op = decoded.op;
      if (op.op === OP_MQTT) {
        // A message journaled by the local MQTT listener: its application publishes it again, not this tool.
        refused.push(`epoch ${entry.epoch} seq ${entry.seq}: an MQTT message on ${op.topic}; export it and publish it again to the agent's MQTT listener; left out`);
        continue;
      }
      const written = op.op === OP_PUT ? await client.put(op.key, op.value) : op.op === OP_DELETE ? await client.delete(op.key) : await client.append(op.data);
      const record = {
        from: { file: entry.file, epoch: entry.epoch, seq: entry.seq, timestampMs: entry.timestampMs },
        op: op.op === OP_ENTRY ? 'entry' : op.op === OP_PUT ? 'put' : 'delete',
        ...(op.op !== OP_ENTRY ? { key: op.key } : {}),
        epoch: written.epoch,
        seq: written.seq,
      };
      await client.put(recordKey, JSON.stringify(record));
      replayed++;
    }
  } finally {
    client.close();
  }
  for (const line of refused) io.stderr(line);
  io.stdout(`replayed ${replayed} writes, skipped ${skipped} already replayed${refused.length > 0 ? `, left out ${refused.length}` : ''}; provenance under ${REPLAY_RECORD_PREFIX}`);
  return refused.length > 0 ? 1 : 0;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
