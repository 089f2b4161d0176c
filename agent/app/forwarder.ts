/**
 * Store-and-forward upstream (config `mqttIngest.forward`): on the node that leads, the journaled MQTT
 * messages (`[4, topic, data, props?]` entries, ops.ts) are published to an upstream broker with their
 * original topics (under an optional prefix), QoS 1, in seq order, with their kept properties.
 *
 * - The position travels with the log: every `markEveryMessages` PUBACKs (or `markIntervalMs` after the
 *   first unmarked one) the forwarder appends a key-value put of FORWARD_POSITION_KEY = the seq of the
 *   newest message whose PUBACK came back with every earlier one's. It is replicated like any entry, so a
 *   sibling that takes over reads it from its own state and forwards from the next seq on; what lies
 *   between that mark and where the old primary really stopped goes upstream a second time (at least once).
 *   Standing down, the forwarder marks once more at its last PUBACK (stop's finalMark); in the brownout flush
 *   that mark lands before the log's fence, so after a handoff the sibling starts at the very next message.
 * - Every forwarded message carries the MQTT 5 user properties `lastgasp-seq` and `lastgasp-epoch` (a
 *   consumer de-duplicates by the pair: a suffix set aside after a silence takeover may reuse seqs under an
 *   older epoch), and `lastgasp-dup: 1` when it may have gone upstream before: it was in the log when this
 *   forwarder started (a previous leader, or this node before a restart, may have sent it), or it was in
 *   flight when the upstream connection dropped.
 * - A message whose expiry interval has passed while it waited is not forwarded (MQTT 5.0 §3.3.2.3.3);
 *   the rest go with the interval less the time waited, as a broker forwarding it would.
 * - By default only what the group holds goes upstream: entries replicated at the group's durability
 *   level, and the entries this node's log held when it became primary (a new leader's log is the group's;
 *   its sibling may be the dead node, so these would never count as replicated). So a suffix that a silence
 *   takeover sets aside never went upstream either, and the sibling that takes over holds everything the
 *   old primary forwarded. `after: flash` forwards once fsynced here (sooner, but an upstream may then see
 *   messages the group sets aside).
 * - A window of `windowMax` unacknowledged publishes keeps the link busy; one connection delivers in order
 *   (MQTT 5.0 §4.6), and after a reconnect the forwarder starts again at the oldest unacknowledged message.
 * - The retention of the log holds every entry after the mark (KvState's holdKey), so an upstream that is
 *   away for long fills the log and writers get backpressure; nothing unforwarded is deleted.
 */
import mqtt, { type IClientPublishOptions, type MqttClient } from 'mqtt';
import { readPrivateFile, type AgentConfig } from '../config/index.ts';
import type { FlashLog, LogEntry } from '../log/index.ts';
import type { Clock, Logger, TimerHandle } from '../util/index.ts';
import type { KvState } from './kv-state.ts';
import { OP_MQTT, OP_PUT, decodeOp, seqFromValue, seqValue, type MqttProps, type Op } from './ops.ts';

/** The key whose value (the seq as decimal text) is the replicated forwarding position. */
export const FORWARD_POSITION_KEY = '$lastgasp/mqtt-forwarded';
/** Bytes read from the log per step: bounds the memory of a catch-up after a long upstream outage. */
const FORWARD_READ_BYTES_MAX = 4 * 1024 * 1024;
/** MQTT.js's connect timeout for the upstream broker. */
const FORWARD_CONNECT_TIMEOUT_MS = 10_000;

export interface ForwarderOptions {
  url: string;
  username?: string;
  password?: string;
  clientId: string;
  /** Prepended to each topic with a "/" (unset: the original topic). */
  topicPrefix?: string;
  windowMax: number;
  markEveryMessages: number;
  markIntervalMs: number;
  reconnectMs: number;
  /** replicated: forward what the group holds; flash: what this node has fsynced. */
  after: 'replicated' | 'flash';
  log: FlashLog;
  /** The replicated position: the seq FORWARD_POSITION_KEY holds in this node's state (0 if none). */
  position(): number;
  /** Record the position in the log (a put of FORWARD_POSITION_KEY); refused when this node may not write. */
  mark(seq: number): Promise<unknown>;
  logger: Logger;
  clock: Clock;
}

interface InFlight {
  readonly seq: number;
  done: boolean;
}

/**
 * The forwarder of config mqttIngest.forward (undefined when it is not set): the password read from its
 * file, the client id made per node, the position kept under FORWARD_POSITION_KEY through `append`.
 */
export async function createForwarder(
  config: AgentConfig,
  parts: { log: FlashLog; state: KvState; append(op: Op): Promise<unknown>; logger: Logger; clock: Clock },
): Promise<Forwarder | undefined> {
  const forward = config.mqttIngest.forward;
  if (!forward) return undefined;
  const password = forward.passwordFile ? (await readPrivateFile(forward.passwordFile, 'mqttIngest.forward.passwordFile')).toString('utf8').trim() : undefined;
  return new Forwarder({
    url: forward.url,
    ...(forward.username !== undefined ? { username: forward.username } : {}),
    ...(password !== undefined ? { password } : {}),
    clientId: `${forward.clientId ?? `lastgasp-${config.group}`}-${config.node}`,
    ...(forward.topicPrefix !== undefined ? { topicPrefix: forward.topicPrefix } : {}),
    windowMax: forward.windowMax,
    markEveryMessages: forward.markEveryMessages,
    markIntervalMs: forward.markIntervalMs,
    reconnectMs: forward.reconnectMs,
    after: forward.after,
    log: parts.log,
    position: () => seqFromValue(parts.state.get(FORWARD_POSITION_KEY)),
    mark: (seq) => parts.append({ op: OP_PUT, key: FORWARD_POSITION_KEY, value: seqValue(seq) }),
    logger: parts.logger,
    clock: parts.clock,
  });
}

export class Forwarder {
  private running = false;
  /** Bumped at every start, stop and reconnect: callbacks of an older connection are ignored. */
  private generation = 0;
  private client: MqttClient | undefined;
  private connected = false;
  private cursor = 1;
  private inFlight: InFlight[] = [];
  private highestSent = 0;
  private lastAcked = 0;
  private marked = 0;
  private sinceMark = 0;
  private dupUntil = 0;
  /** The log's end when this node started forwarding as primary: held by the group (see above). */
  private heldAtStart = 0;
  private marking = false;
  private markTimer: TimerHandle | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private pumping: Promise<void> | undefined;
  private again = false;
  private unsubscribe: Array<() => void> = [];
  readonly counters = { forwarded: 0, forwardDuplicates: 0, forwardExpired: 0, forwardMarks: 0, forwardReconnects: 0, forwardGaps: 0 };

  constructor(private readonly options: ForwarderOptions) {}

  /** Forward from the replicated position on (this node has become primary). */
  start(): void {
    if (this.running) return;
    const { options } = this;
    this.running = true;
    this.generation++;
    this.marked = this.lastAcked = this.highestSent = options.position();
    this.cursor = this.marked + 1;
    this.dupUntil = this.heldAtStart = options.log.watermarks().committed;
    this.sinceMark = 0;
    this.inFlight = [];
    this.unsubscribe = [options.log.onCommit(() => this.kick()), options.log.onReplicated(() => this.kick())];
    options.logger.info('forwarding upstream', { event: 'forward-start', from: this.cursor, dupUntil: this.dupUntil, url: options.url });
    this.connect();
  }

  /**
   * Stop forwarding (this node stands down); messages in flight are the next leader's to send again.
   * `finalMark`: record the last upstream-acknowledged position now (before a handoff's fence), so that the
   * next leader starts right after it instead of up to markEveryMessages plus the window earlier.
   */
  async stop(reason: string, options: { finalMark?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.generation++;
    for (const unsubscribe of this.unsubscribe) unsubscribe();
    this.unsubscribe = [];
    this.markTimer?.cancel();
    this.reconnectTimer?.cancel();
    this.markTimer = this.reconnectTimer = undefined;
    this.disconnect();
    await this.pumping;
    if (options.finalMark && this.lastAcked > this.marked) await this.finalMark(this.lastAcked);
    this.options.logger.info(`forwarding stopped: ${reason}`, { event: 'forward-stop', lastAcked: this.lastAcked, marked: this.marked });
  }

  private async finalMark(seq: number): Promise<void> {
    try {
      await this.options.mark(seq);
      this.marked = seq;
      this.counters.forwardMarks++;
    } catch (error) {
      this.options.logger.info(`the last forwarding position (seq ${seq}) was not recorded (this node may no longer write); the next leader sends from seq ${this.marked + 1} again`, { event: 'forward-final-mark-failed', seq, error });
    }
  }

  status(): Record<string, unknown> {
    return { running: this.running, connected: this.connected, lastAcked: this.lastAcked, marked: this.marked, inFlight: this.inFlight.length, ...this.counters };
  }

  private connect(): void {
    const { options } = this;
    const generation = this.generation;
    const client = mqtt.connect(options.url, {
      clientId: options.clientId,
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: FORWARD_CONNECT_TIMEOUT_MS,
      ...(options.username !== undefined ? { username: options.username } : {}),
      ...(options.password !== undefined ? { password: options.password } : {}),
    });
    this.client = client;
    client.on('connect', () => {
      if (generation !== this.generation) return;
      this.connected = true;
      this.kick();
    });
    client.on('error', (error) => options.logger.debug('upstream broker error', { error: error.message }));
    client.on('close', () => {
      if (generation !== this.generation || !this.running) return;
      this.rewind();
      const next = this.generation;
      this.counters.forwardReconnects++;
      options.logger.warn(`upstream ${options.url} not connected; forwarding resumes at seq ${this.cursor} in ${options.reconnectMs} ms`, { event: 'forward-disconnected', from: this.cursor });
      this.reconnectTimer = options.clock.setTimeout(() => {
        this.reconnectTimer = undefined;
        if (this.running && next === this.generation) this.connect();
      }, options.reconnectMs);
    });
  }

  private disconnect(): void {
    this.connected = false;
    this.client?.removeAllListeners('connect');
    this.client?.removeAllListeners('close');
    this.client?.end(true);
    this.client = undefined;
  }

  /** After a lost connection: everything not acknowledged goes again, marked as a possible duplicate. */
  private rewind(): void {
    this.generation++;
    this.disconnect();
    const oldest = this.inFlight.find((item) => !item.done);
    if (oldest) this.cursor = oldest.seq;
    this.settle();
    this.inFlight = [];
    this.dupUntil = Math.max(this.dupUntil, this.highestSent);
  }

  private kick(): void {
    if (!this.running || !this.connected) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = this.pump()
      .catch((error: unknown) => this.options.logger.error('forwarding failed to read the log', { event: 'forward-error', error }))
      .finally(() => {
        this.pumping = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pump(): Promise<void> {
    const { log, windowMax, after } = this.options;
    const generation = this.generation;
    const limit = () => (after === 'flash' ? log.watermarks().committed : Math.max(this.heldAtStart, log.watermarks().replicated));
    while (this.connected && generation === this.generation && this.inFlight.length < windowMax && this.cursor <= limit()) {
      const entries = await log.read(this.cursor, { entriesMax: Math.min(windowMax - this.inFlight.length, limit() - this.cursor + 1), bytesMax: FORWARD_READ_BYTES_MAX });
      if (generation !== this.generation || entries.length === 0) return;
      for (const entry of entries) {
        if (entry.seq !== this.cursor) {
          this.counters.forwardGaps++;
          this.options.logger.error(`forwarding: seqs ${this.cursor}..${entry.seq - 1} are no longer in the log and were not forwarded`, { event: 'forward-gap', from: this.cursor, to: entry.seq - 1 });
        }
        this.cursor = entry.seq + 1;
        this.send(entry, generation);
      }
    }
  }

  private send(entry: LogEntry, generation: number): void {
    const decoded = decodeOp(entry.payload);
    if (!decoded.ok || decoded.op.op !== OP_MQTT) return;
    const { topic, data, props = {} } = decoded.op;
    const options = publishOptions(entry, props, entry.seq <= this.dupUntil, this.options.clock.nowMs());
    if (!options) {
      this.counters.forwardExpired++;
      return;
    }
    if (entry.seq <= this.dupUntil) this.counters.forwardDuplicates++;
    const item: InFlight = { seq: entry.seq, done: false };
    this.inFlight.push(item);
    this.highestSent = Math.max(this.highestSent, entry.seq);
    const upstreamTopic = this.options.topicPrefix ? `${this.options.topicPrefix}/${topic}` : topic;
    this.client!.publish(upstreamTopic, Buffer.from(data.buffer, data.byteOffset, data.byteLength), options, (error) => {
      if (error || generation !== this.generation) return;
      item.done = true;
      this.settle();
      this.kick();
    });
  }

  /** Move the acknowledged position over every finished publish at the head of the window. */
  private settle(): void {
    while (this.inFlight[0]?.done) {
      this.lastAcked = this.inFlight.shift()!.seq;
      this.counters.forwarded++;
      this.sinceMark++;
    }
    this.maybeMark();
  }

  private maybeMark(): void {
    const { options } = this;
    if (this.marking || this.lastAcked <= this.marked) return;
    if (this.sinceMark < options.markEveryMessages) {
      this.markTimer ??= options.clock.setTimeout(() => {
        this.markTimer = undefined;
        if (this.running) this.writeMark();
      }, options.markIntervalMs);
      return;
    }
    this.writeMark();
  }

  private writeMark(): void {
    if (this.marking || this.lastAcked <= this.marked) return;
    const seq = this.lastAcked;
    this.marking = true;
    this.sinceMark = 0;
    this.markTimer?.cancel();
    this.markTimer = undefined;
    this.options.mark(seq).then(
      () => {
        this.marked = Math.max(this.marked, seq);
        this.counters.forwardMarks++;
      },
      (error: unknown) => this.options.logger.debug('forwarding position not recorded (the next leader sends more again)', { seq, error }),
    ).finally(() => {
      this.marking = false;
      if (this.running) this.maybeMark();
    });
  }
}

/**
 * The publish of one journaled message: QoS 1, its retain flag and properties, the expiry less the time it
 * waited, and the seq, epoch and duplicate marks; undefined when it has expired.
 */
function publishOptions(entry: LogEntry, props: MqttProps, duplicate: boolean, nowMs: number): IClientPublishOptions | undefined {
  const { retain = false, userProperties, correlationData, messageExpiryInterval, ...rest } = props;
  let expiry: { messageExpiryInterval?: number } = {};
  if (messageExpiryInterval !== undefined) {
    const left = messageExpiryInterval - Math.floor(Math.max(0, nowMs - entry.timestampMs) / 1000);
    if (left <= 0) return undefined;
    expiry = { messageExpiryInterval: left };
  }
  const marks: Record<string, string> = { 'lastgasp-seq': String(entry.seq), 'lastgasp-epoch': String(entry.epoch), ...(duplicate ? { 'lastgasp-dup': '1' } : {}) };
  return {
    qos: 1,
    retain,
    properties: {
      ...rest,
      ...expiry,
      ...(correlationData ? { correlationData: Buffer.from(correlationData.buffer, correlationData.byteOffset, correlationData.byteLength) } : {}),
      userProperties: { ...(userProperties as Record<string, string | string[]> | undefined), ...marks },
    },
  };
}
