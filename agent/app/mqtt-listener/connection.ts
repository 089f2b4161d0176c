/**
 * One client connection of the local MQTT listener: bytes in through a size scanner and mqtt-packet's
 * parser, one handler per packet type, acknowledgements out in the order their PUBLISHes came (MQTT 3.1.1
 * §4.6), written together once per turn (one socket write for a whole group commit's PUBACKs).
 *
 * A connection never throws into the server: bad input (a malformed packet, a packet before CONNECT, one
 * over the size cap, a wrong protocol) is counted by reason and the connection closed, for MQTT 5 after a
 * DISCONNECT with the reason code (§4.13).
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import mqttPacket, { type IConnectPacket, type IPublishPacket, type ISubscribePacket, type IUnsubscribePacket, type Packet } from 'mqtt-packet';
import type { LastgaspError } from '../../util/index.ts';
import { FrameScanner } from './frames.ts';
import { bytesOf, keptProps, type Message, type QoS } from './message.ts';
import { Outbound } from './outbound.ts';
import { ackBytes, connackRefusal, connackSuccess, refusalReason, REASON, type BadInput } from './codes.ts';
import { validFilter, validTopicName } from './topics.ts';

/** PUBLISHes of one client awaiting their acknowledgement before the agent stops reading its socket. */
const ACKS_PENDING_MAX = 4096;

/** What a connection asks of the listener that owns it. */
export interface ConnectionHost {
  readonly packetBytesMax: number;
  authenticate(password: Uint8Array | undefined): boolean;
  /** CONNECT accepted: the connection takes its client id (an older connection with the id is closed). */
  register(connection: Connection): void;
  /** A client's PUBLISH or Will: journaled when the policy wants it, then routed; `done` says when it may be acknowledged. */
  publish(from: Connection | undefined, message: Message, done: (error: LastgaspError | undefined) => void): void;
  /** A new subscription: the retained messages that match are delivered to it. */
  subscribed(connection: Connection, filter: string, qos: QoS, fresh: boolean, retainHandling: number): void;
  /** The connection is gone; `will` is its Will when it must be published. */
  closed(connection: Connection, will: Message | undefined): void;
  bad(reason: BadInput, detail: string): void;
  counter(name: 'mqttClosedByListener' | 'mqttAuthFailures' | 'mqttQos2Duplicates' | 'mqttSubscriberDrops' | 'mqttRefused'): void;
}

interface Subscription {
  readonly qos: QoS;
  readonly noLocal: boolean;
  readonly retainAsPublished: boolean;
}

interface AckSlot {
  readonly cmd: 'puback' | 'pubrec';
  readonly id: number;
  /** undefined while the message is being journaled; 0 once it may be acknowledged; ≥ 0x80 refused (MQTT 5). */
  code: number | undefined;
  reason?: string;
}

export class Connection {
  clientId = '';
  version: 4 | 5 = 4;
  connected = false;
  closing = false;
  keepaliveMs = 0;
  lastSeenMs = Date.now();
  readonly openedMs = Date.now();
  readonly subscriptions = new Map<string, Subscription>();
  private will: Message | undefined;
  private readonly parser = mqttPacket.parser();
  private readonly scanner: FrameScanner;
  private readonly acks: AckSlot[] = [];
  private readonly awaitingRelease = new Set<number>();
  private outbound: Outbound | undefined;
  private out: Uint8Array[] = [];
  private flushQueued = false;
  private paused = false;
  /** The listener was told that this connection is gone (once). */
  private reported = false;
  private readonly flushBound = (): void => this.flush();

  constructor(
    private readonly socket: Socket,
    private readonly host: ConnectionHost,
  ) {
    this.scanner = new FrameScanner(host.packetBytesMax);
    this.parser.on('packet', (packet: Packet) => this.handle(packet));
    this.parser.on('error', (error: Error) => this.refuse(/protocol/i.test(error.message) ? 'protocol' : 'malformed', error.message, REASON.malformedPacket));
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', () => this.gone());
    socket.on('close', () => this.gone());
  }

  /** Deliver a routed message to this subscriber. */
  deliver(message: Message, qos: QoS, retain: boolean): void {
    if (!this.connected || this.closing) return;
    this.outbound!.deliver(message, qos, retain);
  }

  /** Close from the listener's side (takeover, keepalive, stop); `reasonCode` goes in an MQTT 5 DISCONNECT. */
  close(reasonCode: number, reasonString: string, publishWill: boolean): void {
    if (this.closing) return;
    this.host.counter('mqttClosedByListener');
    if (!publishWill) this.will = undefined;
    if (this.connected && this.version === 5) this.send(mqttPacket.generate({ cmd: 'disconnect', reasonCode, properties: { reasonString } }, { protocolVersion: 5 }));
    this.end();
  }

  private read(chunk: Buffer): void {
    if (this.closing) return;
    this.lastSeenMs = Date.now();
    const verdict = this.scanner.scan(chunk);
    if (!verdict.ok) return this.refuse(verdict.reason, `packet over ${this.host.packetBytesMax} bytes or a bad length`, verdict.reason === 'oversize' ? REASON.packetTooLarge : REASON.malformedPacket);
    try {
      this.parser.parse(chunk);
    } catch (error) {
      // A handler that threw is a bug here, not the client's; the connection goes, the listener stays.
      this.refuse('internal', (error as Error).message, REASON.unspecified);
    }
  }

  private handle(packet: Packet): void {
    if (this.closing) return;
    if (!this.connected && packet.cmd !== 'connect') return this.refuse('before-connect', `${packet.cmd} before CONNECT`, REASON.protocolError);
    switch (packet.cmd) {
      case 'connect':
        return this.connect(packet);
      case 'publish':
        return this.publish(packet);
      case 'puback':
        return this.outbound!.acknowledged(packet.messageId!);
      case 'pubrel':
        // A PUBREL for an id this connection does not hold comes after a reconnect: its PUBREC was sent,
        // so the message is journaled; complete it (§4.3.3: the sender of PUBREL only needs PUBCOMP).
        this.awaitingRelease.delete(packet.messageId!);
        return this.send(ackBytes('pubcomp', packet.messageId!, 0, undefined, this.version));
      case 'subscribe':
        return this.subscribe(packet);
      case 'unsubscribe':
        return this.unsubscribe(packet);
      case 'pingreq':
        return this.send(PINGRESP);
      case 'disconnect':
        // MQTT 5 reason 0x04: the client asks for its Will to be published all the same (§3.14.2.1).
        if (packet.reasonCode !== REASON.disconnectWithWill) this.will = undefined;
        return this.end();
      case 'pubrec':
      case 'pubcomp':
        // Only QoS 0 and 1 are delivered to subscribers (see outbound.ts): nothing to complete.
        return;
      default:
        return this.refuse('protocol', `unexpected ${packet.cmd}`, REASON.protocolError);
    }
  }

  private connect(packet: IConnectPacket): void {
    if (this.connected) return this.refuse('protocol', 'a second CONNECT', REASON.protocolError);
    this.version = packet.protocolVersion === 5 ? 5 : 4;
    if (packet.protocolVersion !== 4 && packet.protocolVersion !== 5) {
      this.send(connackRefusal(4, 'protocol'));
      return this.refuse('protocol', `MQTT protocol level ${packet.protocolVersion} (3.1.1 and 5 are served)`, undefined);
    }
    if (!this.host.authenticate(packet.password ? bytesOf(packet.password) : undefined)) {
      this.host.counter('mqttAuthFailures');
      this.send(connackRefusal(this.version, 'auth'));
      return this.end();
    }
    let assigned: string | undefined;
    if (!packet.clientId) {
      // MQTT 3.1.1 §3.1.3.1: an empty client id only with a clean session; MQTT 5 assigns one (§3.2.2.3.7).
      if (this.version === 4 && packet.clean === false) {
        this.send(connackRefusal(4, 'identifier'));
        return this.end();
      }
      assigned = `lastgasp-${Math.random().toString(36).slice(2, 12)}`;
    }
    this.clientId = assigned ?? packet.clientId;
    this.keepaliveMs = (packet.keepalive ?? 0) * 1000;
    this.will = packet.will && validTopicName(packet.will.topic)
      ? { topic: packet.will.topic, payload: bytesOf(packet.will.payload), qos: (packet.will.qos ?? 0) as QoS, retain: packet.will.retain === true, props: this.version === 5 ? keptProps(packet.will.properties) : undefined }
      : undefined;
    this.outbound = new Outbound(this.version, (bytes) => this.send(bytes), () => this.host.counter('mqttSubscriberDrops'));
    this.outbound.limit(packet.properties?.receiveMaximum);
    this.connected = true;
    this.host.register(this);
    this.send(connackSuccess(this.version, this.host.packetBytesMax, assigned, (packet.properties?.sessionExpiryInterval ?? 0) > 0));
  }

  private publish(packet: IPublishPacket): void {
    if (this.version === 5 && packet.properties?.topicAlias !== undefined) return this.refuse('protocol', 'a topic alias (none is offered: Topic Alias Maximum 0)', REASON.topicAliasInvalid);
    if (!validTopicName(packet.topic)) return this.refuse('protocol', `PUBLISH to "${packet.topic}"`, REASON.topicNameInvalid);
    const message: Message = { topic: packet.topic, payload: bytesOf(packet.payload), qos: packet.qos, retain: packet.retain, props: this.version === 5 ? keptProps(packet.properties) : undefined };
    if (packet.qos === 0) return this.host.publish(this, message, IGNORE);
    const id = packet.messageId!;
    if (packet.qos === 2 && this.awaitingRelease.has(id)) {
      // §4.3.3: a PUBLISH again with the id of one not yet released is the same message; answer, journal nothing.
      this.host.counter('mqttQos2Duplicates');
      this.acks.push({ cmd: 'pubrec', id, code: 0 });
      return this.drainAcks();
    }
    if (packet.qos === 2) this.awaitingRelease.add(id);
    const slot: AckSlot = { cmd: packet.qos === 1 ? 'puback' : 'pubrec', id, code: undefined };
    this.acks.push(slot);
    if (this.acks.length >= ACKS_PENDING_MAX && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    this.host.publish(this, message, (error) => this.settled(slot, error));
  }

  private settled(slot: AckSlot, error: LastgaspError | undefined): void {
    if (this.closing) return;
    if (!error) {
      slot.code = 0;
      return this.drainAcks();
    }
    this.host.counter('mqttRefused');
    const refusal = refusalReason(error);
    if (this.version === 5 && refusal.permanent) {
      // Sending it again cannot help (too large): refused with a reason, and the client moves on.
      slot.code = refusal.code;
      slot.reason = error.message;
      this.awaitingRelease.delete(slot.id);
      return this.drainAcks();
    }
    // Not taken now (standby, handing off, log full, copy late): no acknowledgement and the connection goes,
    // so the client keeps the message and sends it again once connected (to this node or the next leader).
    this.drainAcks();
    this.close(refusal.code, error.message, true);
  }

  private drainAcks(): void {
    while (this.acks.length > 0 && this.acks[0]!.code !== undefined) {
      const slot = this.acks.shift()!;
      this.send(ackBytes(slot.cmd, slot.id, slot.code!, slot.reason, this.version));
    }
    if (this.paused && this.acks.length < ACKS_PENDING_MAX / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private subscribe(packet: ISubscribePacket): void {
    const granted: number[] = [];
    const fresh: Array<[string, QoS, boolean, number]> = [];
    for (const { topic, qos, nl, rap, rh } of packet.subscriptions) {
      const code = subscriptionRefusal(topic, this.version);
      if (code !== undefined) {
        granted.push(code);
        continue;
      }
      const grantedQos = Math.min(qos, 1) as QoS;
      const isNew = !this.subscriptions.has(topic);
      this.subscriptions.set(topic, { qos: grantedQos, noLocal: nl === true, retainAsPublished: rap === true });
      granted.push(grantedQos);
      fresh.push([topic, grantedQos, isNew, rh ?? 0]);
    }
    this.send(mqttPacket.generate({ cmd: 'suback', messageId: packet.messageId!, granted }, { protocolVersion: this.version }));
    for (const [topic, qos, isNew, retainHandling] of fresh) this.host.subscribed(this, topic, qos, isNew, retainHandling);
  }

  private unsubscribe(packet: IUnsubscribePacket): void {
    const granted = packet.unsubscriptions.map((topic) => (this.subscriptions.delete(topic) ? 0 : REASON.noSubscriptionExisted));
    this.send(mqttPacket.generate({ cmd: 'unsuback', messageId: packet.messageId!, granted }, { protocolVersion: this.version }));
  }

  /** Bad input: counted, an MQTT 5 DISCONNECT with the reason when one is due, and the connection closed. */
  private refuse(reason: BadInput, detail: string, reasonCode: number | undefined): void {
    if (this.closing) return;
    this.host.bad(reason, detail);
    if (reasonCode !== undefined && this.connected && this.version === 5) this.send(mqttPacket.generate({ cmd: 'disconnect', reasonCode, properties: { reasonString: detail.slice(0, 200) } }, { protocolVersion: 5 }));
    this.end();
  }

  private send(bytes: Uint8Array): void {
    this.out.push(bytes);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushBound);
    }
  }

  /** Everything answered in this turn in one socket write. */
  private flush(): void {
    this.flushQueued = false;
    const out = this.out;
    if (out.length === 0 || this.socket.destroyed) return;
    this.out = [];
    this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    if (this.closing) this.socket.end();
  }

  /** Close after what is already answered has been written. */
  private end(): void {
    if (this.closing) return;
    this.closing = true;
    // Once the FIN is out the descriptor goes: a peer that never closes its side must not hold it.
    this.socket.once('finish', () => this.socket.destroy());
    if (this.flushQueued) return; // flush() ends the socket once written
    this.socket.end();
  }

  private gone(): void {
    if (!this.socket.destroyed) this.socket.destroy();
    if (this.reported) return;
    this.reported = true;
    const will = this.connected ? this.will : undefined;
    this.will = undefined;
    this.connected = false;
    this.closing = true;
    this.host.closed(this, will);
  }
}

const PINGRESP = new Uint8Array([0xd0, 0x00]);
const IGNORE = (): void => undefined;

function subscriptionRefusal(filter: string, version: 4 | 5): number | undefined {
  if (filter.startsWith('$share/')) return version === 5 ? REASON.sharedSubscriptionsNotSupported : REASON.failure;
  if (!validFilter(filter)) return version === 5 ? REASON.topicFilterInvalid : REASON.failure;
  return undefined;
}
