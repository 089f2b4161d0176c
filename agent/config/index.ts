/**
 * The config: one schema (schema.ts, its power.source variants in power-source-schema.ts, on the DSL of
 * schema-dsl.ts) with every key's default and meaning, loading from file and environment with its checks
 * (load.ts, sources.ts, security-checks.ts), secrets read from files (secrets.ts), the documentation
 * (describe.ts), and what a config means to each part's options (options.ts).
 */
export { configSchema, type AgentConfig } from './schema.ts';
export { loadConfig, checkConfig, validateConfig, formatIssues } from './load.ts';
export { readConfigSources, envKeys, envName, ENV_PREFIX, type ConfigSources } from './sources.ts';
export { describeConfig } from './describe.ts';
export type { Issue } from './schema-dsl.ts';
export { readSecrets, readPrivateFile, loadOrCreateToken, apiTokenFile, type Secrets, type ApiSecrets, type ReplicationSecrets } from './secrets.ts';
export { logOptions, kvSnapshotOptions, replicationOptions, roleOptions, leaseMsFor, supervisorOptions, powerThresholds, hookOptions } from './options.ts';
