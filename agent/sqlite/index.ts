export * from './wal-format.ts';
