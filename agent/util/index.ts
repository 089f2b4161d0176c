export { LastgaspError, isLastgaspError, systemErrorCode, type ErrorCode } from './errors.ts';
export { writeFileAtomic } from './atomic-file.ts';
export {
  DIR_MODE,
  FILE_MODE,
  isTemporaryOf,
  makeDataDir,
  mkdirDurable,
  nodeFs,
  removeTemporaries,
  replaceFileDurable,
  temporaryPath,
  unlinkDurable,
  type DurableFile,
  type DurableFs,
  type OpenMode,
} from './durable-fs.ts';
export { encodeCbor, decodeCbor } from './cbor.ts';
export { CborWriter, headBytes, uintBytes, textBytes, MAJOR_UINT, MAJOR_BYTES, MAJOR_TEXT, MAJOR_ARRAY, MAJOR_MAP } from './cbor-writer.ts';
export { crc32c, crc32cUpdate, CRC32C_CHECK_VALUE } from './crc32c.ts';
export { systemClock, sleep, type Clock, type TimerHandle } from './clock.ts';
export { boundedWait } from './clock.ts';
export { RecentMax } from './recent-max.ts';
export { createLogger, silentLogger, type Logger, type RootLogger, type LogLevel, type LogFields, type LogMessage } from './logger.ts';
export { isLoopbackHost, splitHostPort } from './loopback.ts';
export { parseCommand, explainParseError, closest, UsageError, HelpRequested, EXIT_USAGE, type CommandSpec, type OptionSpec, type ParsedCommand } from './args.ts';
