/**
 * The direct path to the group's peers, beside the brokers: a TLS listener for what the peers send this
 * node, and one outgoing connection per peer for what this node sends them (listener.ts, peer-link.ts).
 *
 * - As primary it streams the publisher's batches to the peers, during the brownout flush and, with
 *   `always`, all the time. It keeps copies of the batches a peer has not acknowledged yet (bounded), so
 *   that when the path comes into use (the flush begins, a peer reconnects) the peer gets what is in flight
 *   on the brokers too, in order, and no gap costs it a resend request's round trips.
 * - Acks (as standby) and the handoff record (as primary) go to every connected peer whenever one is.
 * - What arrives is handed to the replication hub as if a broker had delivered it: the same signature,
 *   freshness and de-duplication rules apply to every copy, whichever way it came.
 */
import type { Logger } from '../../util/index.ts';
import type { Keyring } from '../keys.ts';
import { DIRECT_KIND_ACK, DIRECT_KIND_BATCH, DIRECT_KIND_LEADER, encodeFrame, type DirectKind } from './frames.ts';
import { DirectListener } from './listener.ts';
import { tlsIdentity } from './peer-auth.ts';
import { PeerLink } from './peer-link.ts';

/**
 * Batches kept for peers that have not acknowledged them: more than the publisher's window (default 8),
 * since a batch stays here past its broker PUBACK until a peer's ack covers it. The bytes bound is a few
 * windows of default-sized (512 KiB) batches; past either bound the oldest go, and a peer that lacks one
 * asks for it as it would from a broker.
 */
const HELD_BATCHES_MAX = 64;
const HELD_BYTES_MAX = 16 * 1024 * 1024;

export interface DirectPathConfig {
  listen: string;
  peers: ReadonlyArray<{ node: string; address: string }>;
  always: boolean;
}

export interface DirectPathOptions extends DirectPathConfig {
  keyring: Keyring;
  /** The largest frame accepted: a batch at batchBytesMax plus its envelope. */
  frameBytesMax: number;
  deliver: (node: string, kind: DirectKind, envelope: Uint8Array) => Promise<void>;
  /** The path started carrying (a peer came up, the flush began): a publisher waiting for a way out goes on. */
  onCarrying: () => void;
  logger: Logger;
}

interface HeldBatch {
  readonly first: number;
  readonly last: number;
  readonly frame: Uint8Array;
  readonly sentTo: Set<string>;
}

interface PeerProgress {
  /** Highest seq the peer acknowledged (through any path). */
  seq: number;
  /** When an ack from it last arrived through this path (performance.now()); undefined: never. */
  directAckAtMs: number | undefined;
}

export class DirectPath {
  private readonly listener: DirectListener;
  private readonly links: PeerLink[];
  private readonly held: HeldBatch[] = [];
  private heldBytes = 0;
  private readonly progress = new Map<string, PeerProgress>();
  private flushing = false;
  private readonly counters = { batchesSent: 0, heldDropped: 0, controlSent: 0 };

  constructor(private readonly options: DirectPathOptions) {
    const identity = tlsIdentity(options.keyring);
    const peers = options.peers.map((peer) => peer.node);
    this.listener = new DirectListener({
      listen: options.listen,
      peers,
      keyring: options.keyring,
      identity,
      frameBytesMax: options.frameBytesMax,
      onFrame: (node, kind, envelope) => this.onFrame(node, kind, envelope),
      logger: options.logger,
    });
    this.links = options.peers.map((peer) => new PeerLink({ node: peer.node, address: peer.address, keyring: options.keyring, identity, logger: options.logger }));
    for (const link of this.links) {
      this.progress.set(link.node, { seq: 0, directAckAtMs: undefined });
      link.on('up', () => {
        this.catchUp(link);
        if (this.inUse()) options.onCarrying();
      });
    }
  }

  get listenPort(): number {
    return this.listener.port;
  }

  async start(): Promise<void> {
    await this.listener.start();
    for (const link of this.links) link.start();
  }

  async stop(): Promise<void> {
    for (const link of this.links) link.stop();
    await this.listener.stop();
  }

  /** The brownout flush began (true) or ended: batches go direct while it lasts. */
  setFlushing(flushing: boolean): void {
    const starting = flushing && !this.flushing;
    this.flushing = flushing;
    if (!starting) return;
    for (const link of this.links) {
      link.hurry();
      this.catchUp(link);
    }
    this.options.onCarrying();
  }

  /** Whether a peer is connected to this node's listener, so that batches can arrive this way. */
  receiving(): boolean {
    return this.links.some((link) => this.listener.isConnectedFrom(link.node));
  }

  /** Whether batches go out on this path now: it is in use and some peer is connected. */
  carrying(): boolean {
    return (this.options.always || this.flushing) && this.links.some((link) => link.state === 'up');
  }

  /** A batch the publisher just sent to the brokers (or would have, were one up): held and, in use, sent. */
  batch(first: number, last: number, payload: Uint8Array): void {
    // A copy: the publisher reuses its encode buffers once the brokers settled a batch.
    const held: HeldBatch = { first, last, frame: encodeFrame(DIRECT_KIND_BATCH, payload), sentTo: new Set() };
    this.held.push(held);
    this.heldBytes += held.frame.length;
    while (this.held.length > HELD_BATCHES_MAX || this.heldBytes > HELD_BYTES_MAX) {
      this.heldBytes -= this.held.shift()!.frame.length;
      this.counters.heldDropped++;
    }
    if (!this.inUse()) return;
    for (const link of this.links) this.sendHeld(link, held);
  }

  /** An ack from `node` arrived (any path): what it covers need not be held for it. */
  noteAck(node: string, seq: number): void {
    const progress = this.progress.get(node);
    if (!progress || seq <= progress.seq) return;
    progress.seq = seq;
    let lowest = Infinity;
    for (const peer of this.progress.values()) lowest = Math.min(lowest, peer.seq);
    while (this.held.length > 0 && this.held[0]!.last <= lowest) this.heldBytes -= this.held.shift()!.frame.length;
  }

  /** An ack (as standby) to every connected peer; resolves once one peer's connection took it, rejects when none is up. */
  sendAck(envelope: Uint8Array): Promise<void> {
    return this.sendControl(encodeFrame(DIRECT_KIND_ACK, envelope));
  }

  /** A handoff record, the same way. */
  sendLeader(envelope: Uint8Array): Promise<void> {
    return this.sendControl(encodeFrame(DIRECT_KIND_LEADER, envelope));
  }

  stats(): Record<string, unknown> {
    const now = performance.now();
    return {
      ...this.counters,
      inUse: this.inUse(),
      always: this.options.always,
      heldBatches: this.held.length,
      heldBytes: this.heldBytes,
      listener: this.listener.stats(),
      peers: this.links.map((link) => {
        const progress = this.progress.get(link.node)!;
        return {
          node: link.node,
          ...link.stats(),
          inboundConnected: this.listener.isConnectedFrom(link.node),
          ackedSeq: progress.seq,
          lastAckAgeMs: progress.directAckAtMs === undefined ? -1 : Math.round(now - progress.directAckAtMs),
          inflight: this.held.filter((held) => held.sentTo.has(link.node) && held.last > progress.seq).length,
        };
      }),
    };
  }

  private inUse(): boolean {
    return this.options.always || this.flushing;
  }

  private onFrame(node: string, kind: DirectKind, envelope: Uint8Array): Promise<void> {
    if (kind === DIRECT_KIND_ACK) this.progress.get(node)!.directAckAtMs = performance.now();
    return this.options.deliver(node, kind, envelope);
  }

  /** The path came into use, or a peer (re)connected while it is: send the held batches that peer lacks, oldest first. */
  private catchUp(link: PeerLink): void {
    if (!this.inUse() || link.state !== 'up') return;
    const acked = this.progress.get(link.node)!.seq;
    for (const held of this.held) {
      if (held.last <= acked) continue;
      // A reconnected peer gets everything again: what went out on the dead connection may not have arrived.
      held.sentTo.delete(link.node);
      this.sendHeld(link, held);
    }
  }

  private sendHeld(link: PeerLink, held: HeldBatch): void {
    if (held.sentTo.has(link.node) || held.last <= this.progress.get(link.node)!.seq) return;
    if (!link.send(held.frame)) return;
    held.sentTo.add(link.node);
    this.counters.batchesSent++;
  }

  private sendControl(frame: Uint8Array): Promise<void> {
    const sends = this.links.filter((link) => link.state === 'up').map((link) => link.sendFlushed(frame));
    if (sends.length === 0) return Promise.reject(new Error('direct path: no peer connected'));
    this.counters.controlSent++;
    return Promise.any(sends);
  }
}
