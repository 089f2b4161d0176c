export { LastgaspError, isLastgaspError, systemErrorCode, type ErrorCode } from './errors.ts';
export { systemClock, sleep, type Clock, type TimerHandle } from './clock.ts';
export { createLogger, silentLogger, type Logger, type LogLevel, type LogFields, type LogMessage } from './logger.ts';
