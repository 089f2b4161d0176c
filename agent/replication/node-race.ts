/**
 * Racing the nodes of one clustered broker (issue 15): when the link's node is gone or connected but not
 * acknowledging, every other node is tried at once, each attempt bounded by a short deadline, and the first
 * node that answers both a CONNECT and a SUBSCRIBE wins. A NATS node whose JetStream has lost a stream
 * leader holds a CONNECT for its 4 s API timeout and then closes it; serially, MQTT.js would spend that on
 * each node in turn. Here a held attempt is abandoned at its deadline and tried again, so the race ends
 * about when the first node can serve, not after the sum of every node's timeouts.
 *
 * Each attempt is a clean session under a client id of its own: attempts with one client id on two nodes
 * of a NATS cluster would take the session from each other, and a clean session leaves nothing queued at
 * the broker once it closes. The SUBACK is the proof of life: on NATS a QoS 1 subscription is a JetStream
 * consumer, so a node that answers it can also store a QoS 1 publish.
 */
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import type { Clock, TimerHandle } from '../util/index.ts';
import { storePublishesUncopied } from './broker-protocol.ts';

export interface RaceOptions {
  urls: readonly string[];
  /** The client options for one attempt at `url` (a clean session under its own client id). */
  clientOptions: (url: string, attempt: number) => IClientOptions;
  subscriptions: ReadonlyMap<string, 0 | 1>;
  /** Longest one attempt (CONNACK and SUBACK) may take before it is abandoned. */
  attemptMs: number;
  /** Pause before a node whose attempt failed is tried again. */
  retryMs: number;
  /** An attempt that failed, and why (counted and shown by the link). */
  onAttemptFailed: (url: string, cause: string) => void;
  /** Every attempt's client, at creation: the link gives it its message handler. */
  onClient: (client: MqttClient) => void;
  /** The link's clock: attempt deadlines and retry pauses. */
  clock: Clock;
}

export interface RaceWinner {
  readonly client: MqttClient;
  readonly connack: IConnackPacket;
  readonly url: string;
}

let attemptCounter = 0;

export class NodeRace {
  private finished = false;
  private readonly live = new Set<MqttClient>();
  private readonly timers = new Set<TimerHandle>();
  private resolve: ((winner: RaceWinner | undefined) => void) | undefined;
  readonly result: Promise<RaceWinner | undefined>;

  constructor(private readonly options: RaceOptions) {
    this.result = new Promise((resolve) => (this.resolve = resolve));
    for (const url of options.urls) this.attempt(url);
  }

  get running(): boolean {
    return !this.finished;
  }

  /** Stop racing: every attempt is closed and the race resolves without a winner (if it had none). */
  cancel(): void {
    this.finish(undefined);
  }

  private attempt(url: string): void {
    if (this.finished) return;
    const client = mqtt.connect(this.options.clientOptions(url, ++attemptCounter));
    storePublishesUncopied(client);
    this.live.add(client);
    this.options.onClient(client);
    let over = false;
    const clock = this.options.clock;
    const startedMs = clock.monotonicMs();
    const fail = (cause: string) => {
      if (over) return;
      over = true;
      deadline.cancel();
      this.timers.delete(deadline);
      this.live.delete(client);
      closeQuietly(client);
      if (this.finished) return;
      this.options.onAttemptFailed(url, cause);
      // A refused connection fails at once: one attempt per node per slice, not a busy loop.
      const waitMs = Math.max(this.options.retryMs, this.options.attemptMs - (clock.monotonicMs() - startedMs));
      const retry = clock.setTimeout(() => {
        this.timers.delete(retry);
        this.attempt(url);
      }, waitMs);
      this.timers.add(retry);
    };
    const deadline = clock.setTimeout(() => fail(`no CONNACK and SUBACK within ${this.options.attemptMs} ms`), this.options.attemptMs);
    this.timers.add(deadline);
    client.on('error', (error) => fail(error.message));
    client.on('close', () => fail(client.connected ? 'connection closed' : 'closed by the broker before it acknowledged'));
    client.once('connect', (connack) => {
      void this.subscribeAll(client).then(
        () => {
          if (over) return;
          over = true;
          deadline.cancel();
          this.timers.delete(deadline);
          this.live.delete(client);
          if (this.finished) return closeQuietly(client);
          this.finish({ client, connack, url });
        },
        (error: Error) => fail(`subscribe failed: ${error.message}`),
      );
    });
  }

  private async subscribeAll(client: MqttClient): Promise<void> {
    const byQos = new Map<0 | 1, string[]>();
    for (const [topic, qos] of this.options.subscriptions) byQos.set(qos, [...(byQos.get(qos) ?? []), topic]);
    for (const [qos, filters] of byQos) await client.subscribeAsync(filters, { qos });
  }

  private finish(winner: RaceWinner | undefined): void {
    if (this.finished) return;
    this.finished = true;
    for (const timer of this.timers) timer.cancel();
    this.timers.clear();
    for (const client of this.live) closeQuietly(client);
    this.live.clear();
    this.resolve?.(winner);
  }
}

/**
 * Close a client the link no longer uses without publishing its Will: a connected one gets a DISCONNECT
 * (its unacknowledged publishes were already failed by the link and are sent again elsewhere, so they are
 * dropped here; MQTT.js would otherwise wait for their PUBACKs for ever), an unconnected one is cut.
 */
export function closeQuietly(client: MqttClient): void {
  if (client.connected) {
    client.outgoing = {};
    void client.endAsync(false).catch(() => undefined);
  } else {
    void client.endAsync(true).catch(() => undefined);
  }
}
