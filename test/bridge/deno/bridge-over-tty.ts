/**
 * Runs under Deno (`deno run -A`), started by deno-tty.test.ts: opens the bridge on the tty given as the
 * first argument with firmware-bridge's PowerSource, which under Deno configures the line with stty and
 * reads and writes the tty through Deno's own file API. Prints one JSON line per thing it sees; when mains
 * is reported lost it asks the device to cut power, and prints the answer.
 */
import { createPowerSource, isDeno } from '../../../firmware-bridge/index.ts';

const path = process.argv[process.argv.length - 1]!;
const print = (line: Record<string, unknown>) => console.log(JSON.stringify(line));
print({ event: 'runtime', deno: isDeno() });
const source = createPowerSource({ kind: 'bridge', transport: { type: 'serial', path } });
let statuses = 0;
await source.start({
  link: (state, reason) => print({ event: 'link', state, reason }),
  status: (status) => {
    if (statuses++ === 0) print({ event: 'status', acPresent: status.acPresent, socPercent: status.socPercent });
  },
  event: (event) => {
    print({ event: 'power-event', kind: event.kind });
    if (event.kind !== 'ac-lost') return;
    void source.cutPower(100).then(async (result) => {
      print({ event: 'cut-result', ...result, counters: source.counters() });
      await source.stop();
      print({ event: 'stopped' });
      process.exit(0);
    });
  },
});
