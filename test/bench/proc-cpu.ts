import { readFileSync } from 'node:fs';

/** /proc/<pid>/stat counts CPU time in clock ticks: 100 a second on Linux (sysconf(_SC_CLK_TCK)). */
const CLOCK_TICKS_PER_S = 100;

/** User and system CPU time the processes `pids` have used so far, in ms, summed (Linux /proc). */
export function processCpuMs(pids: readonly (number | undefined)[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // After "pid (comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}
