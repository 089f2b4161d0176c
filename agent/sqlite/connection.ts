/**
 * A synchronous SQLite connection from whichever SQLite the runtime has: on Node 20 the optional `libsql`
 * package (a real SQLite 3.45 with file locking; Node's own node:sqlite needs Node 22.5), on Deno 2 the
 * built-in `node:sqlite`. The capture needs a real SQLite in this process: a read transaction is what keeps
 * the application from checkpointing past frames the agent has not copied.
 */
import { LastgaspError } from '../util/index.ts';

export interface SqliteConnection {
  exec(sql: string): void;
  get(sql: string, params?: readonly unknown[]): Record<string, unknown> | undefined;
  all(sql: string, params?: readonly unknown[]): Array<Record<string, unknown>>;
  close(): void;
}

type Driver = (path: string, readOnly: boolean) => SqliteConnection;

let driver: Promise<Driver> | undefined;

/** Open `path`; read-only connections never write the file (they still take SQLite's shared-memory locks). */
export async function openSqlite(path: string, readOnly: boolean): Promise<SqliteConnection> {
  driver ??= loadDriver();
  const open = await driver;
  const connection = open(path, readOnly);
  // The agent never waits on SQLite's busy handler: it would block the event loop; callers retry instead.
  connection.exec('PRAGMA busy_timeout=0');
  return connection;
}

async function loadDriver(): Promise<Driver> {
  if ('Deno' in globalThis) {
    // A variable specifier: @types/node 20 has no node:sqlite, and Node 20 must never try to load it.
    const builtin = 'node:sqlite';
    const { DatabaseSync } = (await import(builtin)) as unknown as { DatabaseSync: new (path: string, options: { readOnly: boolean }) => NativeDatabase };
    return (path, readOnly) => wrap(new DatabaseSync(path, { readOnly }), (statement, params) => statement.all(...params), (statement, params) => statement.get(...params));
  }
  let Database: new (path: string) => NativeDatabase;
  try {
    Database = ((await import('libsql')) as unknown as { default: typeof Database }).default;
  } catch (error) {
    throw new LastgaspError('DEPENDENCY_MISSING', `app.sqlite needs the "libsql" package on Node (${(error as Error).message}); install the agent's optional dependencies (npm install --include=optional) or remove app.sqlite`);
  }
  // libsql ignores its readonly option (0.5.29); the URI parameter is what opens the file read-only.
  return (path, readOnly) => wrap(new Database(`file:${encodeURI(path).replace(/[?#]/g, encodeURIComponent)}${readOnly ? '?mode=ro' : ''}`), (statement, params) => statement.all(params), (statement, params) => statement.get(params));
}

interface NativeStatement {
  all(...params: unknown[]): unknown[];
  get(...params: unknown[]): unknown;
}

interface NativeDatabase {
  exec(sql: string): unknown;
  prepare(sql: string): NativeStatement;
  close(): unknown;
}

function wrap(database: NativeDatabase, all: (statement: NativeStatement, params: readonly unknown[]) => unknown[], get: (statement: NativeStatement, params: readonly unknown[]) => unknown): SqliteConnection {
  return {
    exec: (sql) => void database.exec(sql),
    // libsql takes the parameters as one array (a lone Buffer would be read as named parameters).
    get: (sql, params = []) => get(database.prepare(sql), params) as Record<string, unknown> | undefined,
    all: (sql, params = []) => all(database.prepare(sql), params) as Array<Record<string, unknown>>,
    close: () => void database.close(),
  };
}

/** SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock; try again later. */
export function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  const text = String((error as Error)?.message ?? '');
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || /database is locked|SQLITE_BUSY/i.test(text);
}
