/** The operator tools over a log directory: inspect, verify, the quarantine reader, and the `lastgasp log` command. */
export { logCommand, type CommandIo } from './command.ts';
export { inspectLog, type InspectReport, type SegmentReport } from './inspect.ts';
export { readQuarantineFile } from './quarantine-file.ts';
export { verifyLog, type VerifyReport } from './verify.ts';
