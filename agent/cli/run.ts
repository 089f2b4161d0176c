/**
 * `lastgasp run --config FILE`: the daemon. Logs go to stderr (the journal); SIGTERM/SIGINT stop it
 * cleanly (the log is closed, the KV snapshot written, the broker sessions ended); SIGHUP reloads the config
 * (reload.ts). Under systemd (NOTIFY_SOCKET set) it reports readiness, status and reloads and feeds the
 * watchdog (service.ts).
 */
import { Agent } from '../agent.ts';
import { loadConfig, type AgentConfig } from '../config/index.ts';
import { createLogger, type LogLevel, type RootLogger } from '../util/index.ts';
import { parseCommand, type CommandSpec, type Io } from './io.ts';
import { planReload } from './reload.ts';
import { SdNotify } from './sd-notify.ts';
import { ServiceReports } from './service.ts';
import { BUNDLED } from './self.ts';

const RUN: CommandSpec = {
  help: `Usage: lastgasp run --config FILE [--log-level debug|info|warn|error]

Run the agent with the configuration in FILE (YAML or JSON; "lastgasp config defaults" lists every key, its
LASTGASP_* environment variable and the include of drop-in files). The agent opens its log under dataDir,
connects to the brokers, decides its role from the group's leader record, supervises the power source, and
serves the local API at api.listen.
  --config FILE      The agent's config file.
  --log-level LEVEL  Overrides logging.level.

Signals: SIGTERM or SIGINT stop it cleanly. SIGHUP reads FILE again and applies logging.level, the power
thresholds and the hooks at once; other changed keys are logged as needing a restart. --log-level, when given, wins over
logging.level at every reload.
Exit codes: 0 stopped, 1 failed, 64 bad usage, 78 bad configuration, 75 handed off but the power was never cut
(restart it: it rejoins as a standby).

Under systemd (Type=notify) it reports READY=1 once the API serves, STATUS= lines, RELOADING=1 on SIGHUP,
and sends WATCHDOG=1 when the unit sets WatchdogSec=.`,
  options: { config: { type: 'string' }, 'log-level': { type: 'string' } },
};

export async function runCommand(argv: readonly string[], _io: Io): Promise<number> {
  const args = parseCommand(argv, RUN);
  const file = args.required('config', 'FILE');
  const levelOption = args.choice('log-level', ['debug', 'info', 'warn', 'error'] as const, 'info');
  const config = await loadConfig(file);
  const levelFlag: LogLevel | undefined = args.has('log-level') ? levelOption : undefined;
  const logger = createLogger({ level: levelFlag ?? config.logging.level, json: config.logging.json, node: config.node }, 'agent');
  const notifier = SdNotify.fromEnv(process.env, logger.child('agent:systemd'));
  let exitCode = 0;
  let stop: (reason: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => {
    stop = (reason) => {
      logger.info(`${reason}: stopping`);
      resolve(reason);
    };
  });
  const agent = new Agent(config, {
    logger,
    exit: (code) => {
      exitCode = code;
      stop(`exit ${code}`);
    },
  });
  // SIGHUP's default action ends the process: from here on it asks for a reload, taken once the agent serves.
  let started: () => void = () => undefined;
  let reloads = new Promise<void>((resolve) => (started = resolve));
  const reloader = new Reloader(file, config, levelFlag, agent, logger);
  const onHangup = () => void (reloads = reloads.then(() => reloader.reload(reports)));
  process.on('SIGHUP', onHangup);
  const { api } = await agent.start();
  logger.info(`lastgasp running as ${config.node} in group ${config.group}; api at ${api}`, { event: 'ready', api, bundled: BUNDLED });
  const reports = notifier ? new ServiceReports(notifier, agent) : undefined;
  void reports?.ready();
  started();
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  const reason = await stopped;
  void reports?.stopping(reason);
  await reloads;
  await agent.stop();
  process.off('SIGHUP', onHangup);
  logger.info('stopped');
  return exitCode;
}

/** One SIGHUP: read the file, apply what may change now, name what needs a restart, tell systemd. */
class Reloader {
  private running: AgentConfig;

  constructor(
    private readonly file: string,
    config: AgentConfig,
    private readonly levelFlag: LogLevel | undefined,
    private readonly agent: Agent,
    private readonly logger: RootLogger,
  ) {
    this.running = config;
  }

  async reload(reports: ServiceReports | undefined): Promise<void> {
    const { logger } = this;
    await reports?.reloading();
    try {
      const plan = planReload(this.running, await loadConfig(this.file));
      this.logger.setLevel(this.levelFlag ?? plan.effective.logging.level);
      this.agent.setPowerThresholds(plan.effective.power);
      this.agent.setHooks(plan.effective.hooks);
      this.running = plan.effective;
      const applied = plan.applied.map(({ key, from, to }) => `${key} ${JSON.stringify(from)} → ${JSON.stringify(to)}`);
      const fields = { event: 'reload', applied: plan.applied.map(({ key }) => key), restartNeeded: plan.restartNeeded };
      logger.info(`SIGHUP: ${this.file} reloaded; ${applied.length > 0 ? `applied ${applied.join(', ')}` : 'nothing to apply'}`, fields);
      if (this.levelFlag && plan.applied.some(({ key }) => key === 'logging.level')) logger.info(`logging.level stays ${this.levelFlag}: --log-level was given`);
      if (plan.restartNeeded.length > 0) {
        logger.warn(`SIGHUP: changed in ${this.file} but applied only at the next start: ${plan.restartNeeded.join(', ')} (systemctl restart lastgasp)`, { event: 'reload-restart-needed', keys: plan.restartNeeded });
      }
    } catch (error) {
      logger.error(`SIGHUP: ${this.file} not reloaded, running on with the configuration in effect: ${(error as Error).message}`, { event: 'reload-failed' });
    }
    await reports?.reloaded();
  }
}
