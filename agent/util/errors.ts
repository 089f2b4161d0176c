/**
 * Expected operating errors carry a stable `code` that callers branch on and that the local API returns
 * to applications; the message says what happened and what to do. Programmer errors are assertions
 * (`node:assert`) and crash the process instead.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'ENTRY_TOO_LARGE'
  | 'LOG_FULL'
  | 'LOG_THROTTLED'
  | 'LOG_CLOSED'
  | 'LOG_FAULT'
  | 'LOG_NO_SPACE'
  | 'LOG_READ_ONLY'
  | 'LOG_IO'
  | 'LOG_LOCKED'
  | 'LOG_CORRUPT'
  | 'LOG_SEQ'
  | 'NOT_PRIMARY'
  | 'HANDING_OFF'
  | 'LEASE_LOST'
  | 'BAD_REQUEST'
  | 'NOT_FOUND'
  | 'BRIDGE_TIMEOUT'
  | 'BRIDGE_NAK'
  | 'BRIDGE_LINK_DOWN'
  | 'BROKER_REFUSED'
  | 'BROKER_UNAVAILABLE'
  | 'REPLICATION_REJECTED'
  | 'DEPENDENCY_MISSING'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'UNSUPPORTED_MEDIA_TYPE'
  /** A database in app.sqlite cannot be copied safely (not WAL, network file system, locked exclusively). */
  | 'SQLITE_UNSUITABLE'
  /** A write that asked to wait for its copy (ackAfter broker/replica) did not get it in time; it is on this node's flash. */
  | 'NOT_REPLICATED';

export class LastgaspError extends Error {
  readonly code: ErrorCode;
  /** Extra machine-readable context (a path, a seq, a reason code); never secrets. */
  readonly detail: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, detail?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LastgaspError';
    this.code = code;
    this.detail = detail;
  }
}

export function isLastgaspError(error: unknown, code?: ErrorCode): error is LastgaspError {
  return error instanceof LastgaspError && (code === undefined || error.code === code);
}

/** The `code` of a Node system error (`ENOSPC`, `EIO`, ...), if it has one. */
export function systemErrorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}
