/**
 * What every message that arrives (through a broker or the direct path) passes before replication acts on
 * it: it decodes (and, signed, verifies), names this group, comes on the topic of the node it names (a leader
 * record on the leader topic), and, for a control record, is newer than what its sender sent before
 * (freshness.ts). Anything else is counted by reason and dropped, with a log line at most every few seconds
 * per reason. This node's own heartbeats, echoed by the brokers, skip the freshness filter: they are
 * matched by their stamp and counted per broker (takeover/heartbeats.ts), and a copy through each broker is
 * the point. Replication (replication.ts) dispatches what is admitted.
 */
import type { Clock, Logger } from '../util/index.ts';
import { FreshnessFilter, type FreshnessTrack } from './freshness.ts';
import type { DecodeResult, StateMessage, Topics, WireCodec } from './wire.ts';

/** Rejections are logged at most this often per reason (they are always counted). */
const REJECT_LOG_INTERVAL_MS = 5000;

type Decoded = DecodeResult & { ok: true };

export type Admission =
  /** Dropped and counted; `leaderNoise` when it came on the leader topic (the roles watch for garbage there). */
  | { readonly verdict: 'dropped'; readonly leaderNoise: boolean }
  /** This node's own state record, echoed by a broker. */
  | { readonly verdict: 'own-state'; readonly message: StateMessage }
  | { readonly verdict: 'admitted'; readonly decoded: Decoded };

export interface InboundGateOptions {
  codec: WireCodec;
  topics: Topics;
  group: string;
  node: string;
  clock: Clock;
  logger: Logger;
}

export class InboundGate {
  private readonly rejected: Record<string, number> = {};
  private readonly rejectLoggedAtMs = new Map<string, number>();
  private readonly freshness = new FreshnessFilter();
  /** Copies of a message already taken (another broker's, a retained record sent again): not an attack. */
  private duplicates = 0;

  constructor(private readonly options: InboundGateOptions) {}

  stats(): { rejected: Record<string, number>; duplicates: number } {
    return { rejected: { ...this.rejected }, duplicates: this.duplicates };
  }

  admit(topic: string, payload: Uint8Array): Admission {
    const { codec, topics, group, node } = this.options;
    const decoded = codec.decode(payload);
    if (!decoded.ok) return this.reject(payload.length === 0 ? 'empty' : decoded.reason, topic, topic === topics.leader);
    if (decoded.message.group !== group) return this.reject('wrong-group', topic, topic === topics.leader);
    if (!this.fromItsTopic(decoded, topic)) return this.reject('sender-mismatch', topic, topic === topics.leader);
    if (decoded.kind === 'state' && decoded.message.node === node) return { verdict: 'own-state', message: decoded.message };
    if (decoded.kind !== 'batch' && !this.fresh(decoded, topic)) return { verdict: 'dropped', leaderNoise: false };
    return { verdict: 'admitted', decoded };
  }

  /** A batch, ack or state on the topic of the node it names (and, signed, that signed it); a leader record on the leader topic. */
  private fromItsTopic(decoded: Decoded, topic: string): boolean {
    if (decoded.kind === 'leader') return topic === this.options.topics.leader;
    const addressed = this.options.topics.nodeOf(topic);
    return addressed?.kind === (decoded.kind === 'batch' ? 'log' : decoded.kind) && addressed.node === decoded.message.node;
  }

  /** Control messages must be newer than what this sender sent before (freshness.ts); replays are counted. */
  private fresh(decoded: Decoded & { kind: 'ack' | 'state' | 'leader' }, topic: string): boolean {
    const { node, epoch, counter } = decoded.message;
    const track: FreshnessTrack = decoded.kind === 'state' && decoded.message.state === 'offline' ? 'will' : decoded.kind;
    const verdict = this.freshness.check(node, track, epoch, counter);
    if (verdict === 'fresh') return true;
    if (verdict === 'duplicate') this.duplicates++;
    else this.reject(verdict, topic, false);
    return false;
  }

  private reject(reason: string, topic: string, leaderNoise: boolean): Admission {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
    const now = this.options.clock.monotonicMs();
    if (now - (this.rejectLoggedAtMs.get(reason) ?? -Infinity) >= REJECT_LOG_INTERVAL_MS) {
      this.rejectLoggedAtMs.set(reason, now);
      this.options.logger.warn('dropped a message', { reason, topic, sender: this.options.topics.nodeOf(topic)?.node, count: this.rejected[reason] });
    }
    return { verdict: 'dropped', leaderNoise };
  }
}
