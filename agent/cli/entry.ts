/**
 * The one entry point for both runtimes: Node runs it through tsx (bin.mjs), Deno directly:
 *   deno run -A agent/cli/entry.ts run --config agent.yaml
 */
import process from 'node:process';
import { main } from './main.ts';

process.exitCode = await main(process.argv.slice(2));
