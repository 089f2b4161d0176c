/**
 * `lastgasp run --config FILE`: the daemon. Logs go to stderr (the journal); SIGTERM/SIGINT stop it
 * cleanly (the log is closed, the KV snapshot written, the broker sessions ended).
 */
import { Agent } from '../agent.ts';
import { loadConfig } from '../config/index.ts';
import { createLogger } from '../util/index.ts';
import { parseArgs, UsageError, type Io } from './io.ts';

const RUN_HELP = `Usage: lastgasp run --config FILE [--log-level debug|info|warn|error]

Run the agent with the configuration in FILE (YAML or JSON; "lastgasp config defaults" lists every key).
The agent opens its log under dataDir, connects to the brokers, decides its role from the group's leader
record, supervises the power source, and serves the local API at api.listen.

Signals: SIGTERM or SIGINT stop it cleanly. Exit codes: 0 stopped, 1 failed, 78 bad configuration,
75 handed off but the power was never cut (restart it: it rejoins as a standby).`;

export async function runCommand(argv: readonly string[], io: Io): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(RUN_HELP);
    return 0;
  }
  const { options } = parseArgs(argv);
  const file = options.get('config');
  if (!file) throw new UsageError('--config FILE is required');
  const config = await loadConfig(file);
  const level = (options.get('log-level') ?? config.logging.level) as 'debug' | 'info' | 'warn' | 'error';
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
