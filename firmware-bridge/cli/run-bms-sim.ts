/**
 * Runs the simulator as a program of its own (`node --import tsx firmware-bridge/cli/run-bms-sim.ts ...`), the way
 * the bridge's tests start it as a separate process; `lastgasp bms-sim` does the same through agent/cli.
 */
import { bmsSimMain } from './bms-sim.ts';

const code = await bmsSimMain(process.argv.slice(2), {
  stdout: (line) => process.stdout.write(line + '\n'),
  stderr: (line) => process.stderr.write(line + '\n'),
  stdin: process.stdin,
});
process.exit(code);
