/**
 * `lastgasp <command>`: the daemon, the demo, the BMS tools and the operator's log tools.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isLastgaspError } from '../util/index.ts';
import { processIo, parseArgs, UsageError, type Io } from './io.ts';
import { PACKAGE_ROOT } from './self.ts';

const HELP = `lastgasp: keeps a battery-backed gateway's data safe through a power cut.

Usage: lastgasp <command> [options]

Commands:
  run --config FILE         Run the agent (the daemon a systemd unit starts).
  demo [--json]             The whole story on this machine: broker, BMS simulator, a primary and a
                            sibling agent, a workload, a power cut, the flush and the takeover.
  status [--config FILE]    Ask a running agent for its status (default: the socket unix:/run/lastgasp/api.sock).
  config check FILE         Validate a config file and print what is wrong, field by field.
  config defaults           Print every config key with its default and meaning.
  bms-sim [options]         Play a BMS (bridge protocol, JBD, Daly or Megatec Q1) on a pty or TCP port.
  bms probe|decode ...      Find which protocol a device speaks; decode a captured frame.
  log inspect|verify DIR    Show a log directory's segments and watermarks; check every record.
  keys generate|show        Make a gateway's signing key pair; show a key's public part and fingerprint.
  quarantine list|export|replay DIR
                            The writes a node set aside after a takeover: list, export, replay on the primary.
  version                   Print the version.

Run "lastgasp <command> --help" for a command's options.`;

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
        return await (await import('../../firmware-bridge/index.ts')).bmsSimMain([...rest], io);
      case 'bms':
        return await (await import('../../firmware-bridge/index.ts')).bmsMain([...rest], io);
      case 'log':
        return await (await import('../log/index.ts')).logCommand([...rest], io);
      case 'keys':
        return await (await import('./keys.ts')).keysCommand(rest, io);
      case 'quarantine':
        return await (await import('./quarantine.ts')).quarantineCommand(rest, io);
      case 'version':
      case '--version':
        io.stdout(version());
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout(HELP);
        return command === undefined ? 2 : 0;
      default:
        io.stderr(`lastgasp: unknown command "${command}"\n\n${HELP}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`lastgasp ${command}: ${error.message} (see lastgasp ${command} --help)`);
      return 2;
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
  lastgasp config check FILE    Validate FILE (YAML or JSON); exit 0 when valid, 78 otherwise.
  lastgasp config defaults      Print every key with its type, default and meaning, as YAML.`;

async function configCommand(argv: readonly string[], io: Io): Promise<number> {
  const [sub, file] = argv;
  const { describeConfig, loadConfig } = await import('../config/index.ts');
  if (sub === 'defaults') {
    io.stdout(describeConfig());
    return 0;
  }
  if (sub === 'check' && file) {
    const config = await loadConfig(file);
    io.stdout(`config ${file}: valid (node ${config.node}, group ${config.group}, ${config.replication.brokers.length} broker(s), power source ${config.power.source.kind})`);
    return 0;
  }
  io.stdout(CONFIG_HELP);
  return sub === '--help' ? 0 : 2;
}
