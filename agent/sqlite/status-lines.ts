/** `lastgasp status`: one line per database of `app.sqlite`, from the `sqlite` part of GET /v1/status. */
export function sqliteStatusLines(status: Record<string, unknown>): string[] {
  const databases = (status.sqlite ?? []) as Array<Record<string, unknown>>;
  return databases.map((db) => {
    const error = db.error ? `  ERROR: ${db.error}` : '';
    if (db.role === 'capture') {
      const refused = Number(db.appendFailures ?? 0) > 0 ? `, ${db.appendFailures} appends refused by the log (the WAL kept them)` : '';
      const givenUp = Number(db.walGiveUps ?? 0) > 0 ? `, ${db.walGiveUps} times past walBytesMax with the log full (frames given up, a new snapshot after)${db.walGivenUp ? ': waiting for room for that snapshot' : ''}` : '';
      const lag = db.lagMsP50 === undefined ? 'no lag measured yet' : `lag p50 ${Math.round(db.lagMsP50 as number)} ms, p99 ${Math.round(db.lagMsP99 as number)} ms`;
      return `  sqlite ${db.name}: capturing, ${db.commitsCaptured} commits (${db.framesCaptured} frames) to seq ${db.lastCommitSeq}, ${lag}, WAL ${db.walBytes} bytes, ${db.checkpoints} checkpoints (${db.fullCheckpoints ?? 0} complete; write barrier busy ${db.barrierBusy ?? 0} times, held ${Math.round(Number(db.barrierMsMax ?? 0))} ms at most), generation ${db.generations}${refused}${givenUp}${error}`;
    }
    const aside = db.lastSetAside ? `, own file set aside as ${db.lastSetAside}` : '';
    const abandoned = Number(db.snapshotsAbandoned ?? 0) > 0 ? `, ${db.snapshotsAbandoned} snapshots cut short dropped` : '';
    return `  sqlite ${db.name}: replica, ${db.commitsApplied} commits and ${db.snapshotsApplied} snapshots applied${abandoned}, to seq ${db.appliedSeq}${aside}`;
  });
}

/** The capture's last lags (ms), for the p50/p99 in status. */
export class LagSamples {
  private readonly samples: number[] = [];

  constructor(private readonly kept: number) {}

  record(lagMs: number): void {
    this.samples.push(Math.max(0, lagMs));
    if (this.samples.length > this.kept) this.samples.shift();
  }

  quantiles(qs: readonly number[]): Array<number | undefined> {
    const sorted = [...this.samples].sort((a, b) => a - b);
    return qs.map((q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : undefined));
  }
}
