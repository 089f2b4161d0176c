import { fileURLToPath } from 'node:url';

/** The broker-config/ directory, found from this module so that it works from any working directory. */
export const BROKER_CONFIG_DIR = fileURLToPath(new URL('.', import.meta.url));
