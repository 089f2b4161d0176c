/**
 * Runs the simulator as a program of its own (`node --import tsx firmware-bridge/sim/run.ts ...`), the way
 * the bridge's tests start it as a separate process; `lastgasp bms-sim` does the same through agent/cli.
 */
import { bmsSimMain } from './cli.ts';

const code = await bmsSimMain(process.argv.slice(2), {
  stdout: (line) => process.stdout.write(line + '\n'),
  stderr: (line) => process.stderr.write(line + '\n'),
  stdin: process.stdin,
});
process.exit(code);
