/**
 * The leader record this node last accepted, kept on its own flash (`dataDir/leader.json`). It is written,
 * and synced, before the node acts on what it says: before a primary opens writes in a new epoch, before a
 * handoff record leaves (that is the latch: restarted, the node finds its own handoff and comes back as a
 * standby), before a demotion cuts the log. So the file is never behind what the node did, and together
 * with the log's epoch it gives the durable epoch floor: a record below it, whatever a broker retains or
 * has lost, moves nothing.
 */
import { readFile } from 'node:fs/promises';
import type { LeaderMessage } from '../replication/index.ts';
import { writeFileAtomic, type Logger } from '../util/index.ts';
import { EPOCH_MAX } from './epochs.ts';

export class LeaderStore {
  private record: LeaderMessage | undefined;
  /** Saves run one after another, so that the file ends with the last record saved, not the last to finish. */
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly file: string,
    private readonly group: string,
    private readonly logger: Logger,
  ) {}

  get current(): LeaderMessage | undefined {
    return this.record;
  }

  /** Read the file once at start. A missing file is a node that never saw a leader; an unreadable one is said. */
  async load(): Promise<LeaderMessage | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn('cannot read the last leader record', { file: this.file, error });
      return undefined;
    }
    try {
      const record = JSON.parse(text) as LeaderMessage;
      if (record.group !== this.group || !Number.isSafeInteger(record.epoch) || record.epoch < 1 || record.epoch > EPOCH_MAX || typeof record.node !== 'string') {
        this.logger.warn('ignoring a leader record file that is not this group\'s', { file: this.file });
        return undefined;
      }
      this.record = record;
      return record;
    } catch (error) {
      this.logger.warn('the last leader record is not valid JSON; the log\'s epoch alone sets the floor', { file: this.file, error });
      return undefined;
    }
  }

  /** Durably replace the record; resolves once it is on flash. */
  save(record: LeaderMessage): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(record) + '\n');
    const turn = this.saving.then(async () => {
      await writeFileAtomic(this.file, bytes);
      this.record = record;
    });
    this.saving = turn.catch(() => undefined);
    return turn;
  }
}
