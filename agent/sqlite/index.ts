export * from './wal-format.ts';
export { SqliteDatabases, sqliteName, type SqliteDatabaseConfig, type SqliteDatabasesOptions } from './databases.ts';
export { SqliteCapture, type CaptureOptions } from './capture.ts';
export { SqliteReplica, type ReplicaOptions } from './replica.ts';
export { RedoJournals, type JournaledApply } from './redo-journal.ts';
export { checkDatabase, versionBefore, SQLITE_WAL_RESET_FIXED, type DatabaseCheck } from './checks.ts';
export { encodeSqliteEntry, decodeSqliteEntry, splitTransaction, pagesPerEntry, appendGrouped, OP_SQLITE, SQLITE_FLAG_SNAPSHOT, type SqliteEntry } from './entry.ts';
export { openSqlite, type SqliteConnection } from './connection.ts';
export { sqliteStatusLines } from './status-lines.ts';
