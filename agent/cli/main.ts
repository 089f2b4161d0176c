/**
 * `lastgasp <command>`: the daemon, the demo, the BMS tools and the operator's log tools.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { closest, isLastgaspError } from '../util/index.ts';
import { EXIT_USAGE, HelpRequested, parseCommand, processIo, UsageError, type CommandSpec, type Io } from './io.ts';
import { PACKAGE_ROOT } from './self.ts';

const HELP = `lastgasp: keeps a battery-backed gateway's data safe through a power cut.

Usage: lastgasp <command> [options]

Commands:
  run --config FILE         Run the agent (the daemon a systemd unit starts).
  demo [--json]             The whole story on this machine: broker, BMS simulator, a primary and a
                            sibling agent, a workload, a power cut, the flush and the takeover.
  status [--config FILE]    Ask a running agent for its status (default: the socket unix:/run/lastgasp/api.sock).
  config check FILE         Validate a config (with its drop-ins, LASTGASP_* variables and secrets); every problem.
  config defaults           Print every config key with its default, meaning and environment variable.
  bms-sim [options]         Play a BMS (bridge protocol, JBD, Daly or Megatec Q1) on a pty or TCP port.
  bms probe|decode ...      Find which protocol a device speaks; decode a captured frame.
  log inspect|verify DIR    Show an agent's log (DIR: its dataDir, or --config FILE): segments, watermarks; check it.
  watch [--group G]         Print every message on the group's topics, decoded (and verified with --keys).
  keys generate|show        Make a gateway's signing key pair; show a key's public part and fingerprint.
  quarantine list|export|replay DIR
                            The writes a node set aside after a takeover: list, export, replay on the primary.
  version                   Print the version.

Run "lastgasp <command> --help" for a command's options. Exit codes: 0 ok, 1 failed, 64 bad usage,
78 bad configuration.`;

const COMMANDS = ['run', 'demo', 'status', 'config', 'bms-sim', 'bms', 'log', 'keys', 'quarantine', 'watch', 'version', 'help'];

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      // Each command loads only its own modules: `run` starts fast and needs nothing of the simulator.
      case 'run':
        return await (await import('./run.ts')).runCommand(rest, io);
      case 'demo':
        return await (await import('./demo.ts')).demoCommand(rest, io);
      case 'status':
        return await (await import('./status.ts')).statusCommand(rest, io);
      case 'config':
        return await configCommand(rest, io);
      case 'bms-sim':
        return await (await import('../../firmware-bridge/cli/index.ts')).bmsSimMain([...rest], io);
      case 'bms':
        return await (await import('../../firmware-bridge/cli/index.ts')).bmsMain([...rest], io);
      case 'log':
        return await (await import('../log/index.ts')).logCommand([...rest], io, async (file) => (await (await import('../config/index.ts')).loadConfig(file)).dataDir);
      case 'keys':
        return await (await import('./keys.ts')).keysCommand(rest, io);
      case 'quarantine':
        return await (await import('./quarantine.ts')).quarantineCommand(rest, io);
      case 'watch':
        return await (await import('./watch.ts')).watchCommand(rest, io);
      case 'version':
      case '--version':
        parseCommand(rest, { help: 'Usage: lastgasp version\n\nPrint the version.', options: {} });
        io.stdout(version());
        return 0;
      case 'help':
      case '--help':
      case '-h':
        io.stdout(HELP);
        return 0;
      case undefined:
        io.stderr(HELP);
        return EXIT_USAGE;
      default: {
        const close = closest(command, COMMANDS);
        io.stderr(`lastgasp: unknown command "${command}"${close ? ` (did you mean "${close}"?)` : ''}\n\n${HELP}`);
        return EXIT_USAGE;
      }
    }
  } catch (error) {
    if (error instanceof HelpRequested) {
      io.stdout(error.text);
      return 0;
    }
    if (error instanceof UsageError) {
      io.stderr(`lastgasp ${command}: ${error.message} (see lastgasp ${command} --help)`);
      return EXIT_USAGE;
    }
    if (isLastgaspError(error)) {
      io.stderr(`lastgasp ${command}: ${error.message}`);
      return error.code === 'CONFIG_INVALID' ? 78 : 1;
    }
    throw error;
  }
}

function version(): string {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
  return `lastgasp ${pkg.version}`;
}

const CONFIG_HELP = `Usage:
  lastgasp config check FILE [--json]   Validate FILE (YAML or JSON) with its drop-ins (include) and the
                                        LASTGASP_* environment, and check every secret it names (files
                                        present and private, variables set); every problem at once.
                                        Exit 0 when valid, 78 otherwise.
  lastgasp config defaults              Print every key with its type, default, meaning and LASTGASP_*
                                        variable, as YAML.`;

const CHECK: CommandSpec = { help: CONFIG_HELP, options: { json: { type: 'boolean' } }, positionals: { min: 1, max: 1, names: 'FILE (the config file)' } };
const DEFAULTS: CommandSpec = { help: CONFIG_HELP, options: {} };

async function configCommand(argv: readonly string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { checkConfig, describeConfig, formatIssues } = await import('../config/index.ts');
  if (sub === 'defaults') {
    parseCommand(rest, DEFAULTS);
    io.stdout(describeConfig());
    return 0;
  }
  if (sub === 'check') {
    const args = parseCommand(rest, CHECK);
    const file = args.positionals[0]!;
    const { sources, config, issues } = await checkConfig(file);
    if (config?.replication.signing) {
      // The signing keys as the agent loads them: the private key private, every public key readable, and
      // this node's own public key the one its private key makes.
      await (await import('../replication/index.ts')).loadKeyring(config.node, config.replication.signing).catch((error: unknown) => {
        const text = (error as Error).message.replace(/^config: /, '');
        const colon = text.indexOf(': ');
        issues.push({ path: colon > 0 ? text.slice(0, colon) : 'replication.signing', message: colon > 0 ? text.slice(colon + 2) : text });
      });
    }
    if (args.has('json')) {
      io.stdout(JSON.stringify({ valid: issues.length === 0, files: sources.files, env: sources.env, envUnused: sources.envUnused, issues }));
      return issues.length === 0 ? 0 : 78;
    }
    for (const extra of sources.files.slice(1)) io.stderr(`config ${file}: include: read ${extra}`);
    for (const applied of sources.env) io.stderr(`config ${file}: ${applied.path}: set by ${applied.name}`);
    for (const name of sources.envUnused) io.stderr(`config ${file}: note: ${name} is set but names no config key ("lastgasp config defaults" lists them)`);
    if (issues.length > 0) {
      io.stderr(formatIssues(file, issues));
      io.stderr(`config ${file}: ${issues.length} problem(s)`);
      return 78;
    }
    io.stdout(`config ${file}: valid (node ${config!.node}, group ${config!.group}, ${config!.replication.brokers.length} broker(s), power source ${config!.power.source.kind})`);
    return 0;
  }
  if (sub === '--help' || sub === '-h' || sub === 'help') throw new HelpRequested(CONFIG_HELP);
  if (sub === undefined) throw new UsageError('missing a command: check or defaults');
  const close = closest(sub, ['check', 'defaults']);
  throw new UsageError(`unknown command "${sub}"${close ? ` (did you mean ${close}?)` : ''} (expected check or defaults)`);
}
