export { configSchema, type AgentConfig } from './schema.ts';
export { loadConfig, checkConfig, validateConfig, formatIssues } from './load.ts';
export { readConfigSources, envKeys, envName, ENV_PREFIX, type ConfigSources } from './sources.ts';
export { describeConfig } from './describe.ts';
export type { Issue } from './schema-dsl.ts';
export { readSecrets, readPrivateFile, loadOrCreateToken, apiTokenFile, type Secrets, type ApiSecrets, type ReplicationSecrets } from './secrets.ts';
export { logOptions, replicationOptions, roleOptions, leaseMsFor, supervisorOptions, powerThresholds, hookOptions } from './options.ts';
