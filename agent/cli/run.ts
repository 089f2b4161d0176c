/**
 * `lastgasp run --config FILE`: the daemon. Logs go to stderr (the journal); SIGTERM/SIGINT stop it
 * cleanly (the log is closed, the KV snapshot written, the broker sessions ended).
 */
import { Agent } from '../agent.ts';
import { loadConfig } from '../config/index.ts';
import { createLogger } from '../util/index.ts';
import { parseCommand, type CommandSpec, type Io } from './io.ts';

const RUN: CommandSpec = {
  help: `Usage: lastgasp run --config FILE [--log-level debug|info|warn|error]

Run the agent with the configuration in FILE (YAML or JSON; "lastgasp config defaults" lists every key, its
LASTGASP_* environment variable and the include of drop-in files). The agent opens its log under dataDir,
connects to the brokers, decides its role from the group's leader record, supervises the power source, and
serves the local API at api.listen.
  --config FILE      The agent's config file.
  --log-level LEVEL  Overrides logging.level.

Signals: SIGTERM or SIGINT stop it cleanly. Exit codes: 0 stopped, 1 failed, 64 bad usage, 78 bad
configuration, 75 handed off but the power was never cut (restart it: it rejoins as a standby).`,
  options: { config: { type: 'string' }, 'log-level': { type: 'string' } },
};

export async function runCommand(argv: readonly string[], _io: Io): Promise<number> {
  const args = parseCommand(argv, RUN);
  const file = args.required('config', 'FILE');
  const levelOption = args.choice('log-level', ['debug', 'info', 'warn', 'error'] as const, 'info');
  const config = await loadConfig(file);
  const level = args.has('log-level') ? levelOption : config.logging.level;
  const logger = createLogger({ level, json: config.logging.json, node: config.node }, 'agent');
  let exitCode = 0;
  let stop: (reason: string) => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    stop = (reason) => {
      logger.info(`${reason}: stopping`);
      resolve();
    };
  });
  const agent = new Agent(config, {
    logger,
    exit: (code) => {
      exitCode = code;
      stop(`exit ${code}`);
    },
  });
  const { api } = await agent.start();
  logger.info(`lastgasp running as ${config.node} in group ${config.group}; api at ${api}`, { event: 'ready', api });
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await stopped;
  await agent.stop();
  logger.info('stopped');
  return exitCode;
}
