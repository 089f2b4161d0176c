/**
 * `lastgasp log <inspect|verify>`: argument parsing, the text and JSON output, and the exit status. Both
 * commands only read: files are opened read-only, nothing is locked, synced, truncated or renamed, so they
 * are safe beside a live agent (a segment that retention removes mid-run is reported as gone, and the active
 * segment's unsynced tail is reported as such, not as damage).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT_USAGE, HelpRequested, UsageError, parseCommand, type CommandSpec } from '../../util/index.ts';
import { LOG_FORMAT_VERSION } from '../format.ts';
import { inspectLog, type InspectReport } from './inspect.ts';
import { verifyLog, type VerifyReport } from './verify.ts';

export interface CommandIo {
  stdout(line: string): void;
  stderr(line: string): void;
}

const HELP = `Usage: lastgasp log <inspect|verify> [DIR | --config FILE] [--json]

Look at an agent's flash log. DIR is the agent's dataDir (its log is in DIR/log) or the log directory
itself; --config FILE takes the dataDir from the agent's config. Both commands only read: they open
files read-only, take no lock and write nothing, so they are safe to run while the agent is appending.

Commands:
  inspect   segments (state, seq range, bytes used of allocated), the committed end, epoch,
            watermarks from the last checkpoint, quarantine files and space on disk
  verify    read every record of every segment and check its CRC-32C and seq continuity;
            exits 1 and prints the file and byte offset of the first bad record

Options:
  --config FILE  the agent's config file (YAML or JSON): its dataDir
  --json         print one JSON object instead of text
  -h, --help     show this help

Exit status: 0 ok, 1 corruption found (verify), 2 the directory cannot be read, 64 bad usage.
The byte layout is documented in agent/log/FORMAT.md (format version ${LOG_FORMAT_VERSION}).`;

const LOG_COMMAND: CommandSpec = { help: HELP, options: { config: { type: 'string' }, json: { type: 'boolean' } }, positionals: { min: 1, max: 2, names: 'inspect|verify and DIR' } };

function formatInspect(report: InspectReport): string[] {
  const lines = [
    `log ${report.dir} (format v${report.formatVersion})`,
    `  seq ${report.firstSeq}..${report.committed}  epoch ${report.epoch}  ${report.cleanClose ? 'closed cleanly' : 'not closed cleanly (open, or crashed)'}`,
    `  watermarks: replicated ${report.watermarks.replicated}, replica-acked ${report.watermarks.replicaAcked}, retention floor ${report.watermarks.retentionFloor ?? 'none'}`,
    `  space: ${report.space.usedBytes} bytes used in ${report.space.segmentBytes} allocated; spares ${report.space.spareBytes}; quarantine ${report.space.quarantineBytes}; total ${report.space.totalBytes}`,
    `  lock: ${formatLock(report.lock)}`,
    ...(report.demotionPending ? ['  demotion: interrupted; the next open finishes it'] : []),
    '  segments:',
  ];
  for (const s of report.segments) {
    const range = s.state === 'spare' || s.state === 'damaged' ? '-' : s.lastSeq === 0 ? `${s.firstSeq}.. (empty)` : `${s.firstSeq}..${s.lastSeq}`;
    lines.push(`    ${s.file.split('/').pop()}  ${s.state.padEnd(7)}  seq ${range.padEnd(20)}  ${s.bytesUsed}/${s.fileBytes} bytes${s.problem ? `  (${s.problem})` : ''}`);
  }
  if (report.quarantine.length > 0) {
    lines.push('  quarantine:');
    for (const q of report.quarantine) lines.push(`    ${q.file.split('/').pop()}  ${q.bytes} bytes`);
  }
  return lines;
}

function formatLock(lock: InspectReport['lock']): string {
  if (!lock) return 'none';
  const since = new Date(lock.sinceMs).toISOString();
  if (lock.released) return `free (last held by pid ${lock.pid} on ${lock.host} from ${since})`;
  return lock.alive ? `held by pid ${lock.pid} on ${lock.host} since ${since}` : `stale (pid ${lock.pid} on ${lock.host} is gone; the next open takes it over)`;
}

function formatVerify(report: VerifyReport): string[] {
  const mb = report.bytesChecked / 1e6;
  const lines = [
    `${report.ok ? 'OK' : 'CORRUPT'}: ${report.dir}: ${report.entries} entries (seq ${report.firstSeq}..${report.lastSeq}), ${report.checkpoints} checkpoints, ${report.segmentsChecked} segments, ${mb.toFixed(1)} MB checked in ${report.durationMs.toFixed(0)} ms`,
  ];
  if (report.firstBad) lines.push(`first bad record: ${report.firstBad.file} at byte offset ${report.firstBad.offset} (expected seq ${report.firstBad.expectedSeq}): ${report.firstBad.reason}`);
  if (report.tailBytesPending > 0) lines.push(`tail: ${report.tailBytesPending} bytes after the last valid record (a write in flight, or a torn tail the next open cuts)`);
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines;
}

/**
 * `lastgasp log ...`: returns the exit status. `dataDirOf` reads an agent's config for --config (the CLI
 * passes the config loader; the log itself knows nothing of configs).
 */
export async function logCommand(argv: string[], io: CommandIo, dataDirOf?: (configFile: string) => Promise<string>): Promise<number> {
  let command: string;
  let dir: string;
  let json: boolean;
  try {
    const args = parseCommand(argv, LOG_COMMAND);
    const [name, given] = args.positionals as [string, string | undefined];
    if (name !== 'inspect' && name !== 'verify') throw new UsageError(`unknown command "${name}" (expected inspect or verify)`);
    const configFile = args.string('config');
    if ((given === undefined) === (configFile === undefined)) throw new UsageError('give DIR (the agent\'s dataDir or its log directory) or --config FILE, one of them');
    if (configFile !== undefined && !dataDirOf) throw new UsageError('--config is not available here; give DIR');
    command = name;
    dir = given ?? join(await dataDirOf!(configFile!), 'log');
    json = args.has('json');
  } catch (error) {
    if (error instanceof HelpRequested) return void io.stdout(error.text), 0;
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`lastgasp log: ${error.message} (see lastgasp log --help)`);
    return EXIT_USAGE;
  }
  try {
    // The agent's dataDir holds the log in log/: take it, so that the directory the config names works.
    if (await isDirectory(join(dir, 'log'))) dir = join(dir, 'log');
    if (command === 'inspect') {
      const report = await inspectLog(dir);
      if (json) io.stdout(JSON.stringify(report));
      else for (const line of formatInspect(report)) io.stdout(line);
      return 0;
    }
    const report = await verifyLog(dir);
    if (json) io.stdout(JSON.stringify(report));
    else for (const line of formatVerify(report)) io.stdout(line);
    return report.ok ? 0 : 1;
  } catch (error) {
    io.stderr(`lastgasp log ${command}: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true;
}
