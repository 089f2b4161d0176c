/**
 * LASTGASP_HOLDUP_DEBUG=1 for bench:holdup: what crossed the shaped uplink after the brownout, packet by
 * packet (the MQTT stream parsed again), each with the ms at which its last byte left the link's bucket. It
 * shows where a case's hold-up time went: records ahead of the tail, the handoff record, batches that left
 * too late to arrive before the cut.
 */
import mqttPacket, { type Packet } from 'mqtt-packet';
import { decode } from 'cbor-x';

/** A state record's state, from its signed envelope (the body is CBOR inside CBOR). */
function stateOf(payload: Uint8Array): string {
  try {
    const envelope = decode(payload) as { b?: Uint8Array };
    return envelope.b instanceof Uint8Array ? String((decode(envelope.b) as { state?: unknown }).state) : '?';
  } catch {
    return '?';
  }
}

/** A power record's state (plain JSON). */
function powerStateOf(payload: Uint8Array): string {
  try {
    return String((JSON.parse(new TextDecoder().decode(payload)) as { state?: unknown }).state);
  } catch {
    return '?';
  }
}

export interface UplinkTrace {
  /** The shaped link's `onUp`: a piece left the bucket at `atMs`. */
  onUp(piece: Buffer, atMs: number): void;
  /** Count from now (the brownout). */
  start(): void;
  /** One line: `ms topic-tail bytes [state]` per packet since start, PUBACKs left out. */
  line(): string;
}

export function uplinkTrace(): UplinkTrace {
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  const packets: string[] = [];
  let startMs: number | undefined;
  let atMs = 0;
  parser.on('packet', (packet: Packet) => {
    if (startMs === undefined || packet.cmd !== 'publish') return;
    const payload = typeof packet.payload === 'string' ? new TextEncoder().encode(packet.payload) : packet.payload;
    const topic = packet.topic.split('/').slice(-2).join('/');
    const state = packet.topic.endsWith('/power') ? ` ${powerStateOf(payload)}` : packet.topic.includes('/state/') ? ` ${stateOf(payload)}` : '';
    packets.push(`${Math.round(atMs - startMs)} ${topic} ${payload.length}${state}`);
  });
  return {
    onUp(piece, at) {
      atMs = at;
      parser.parse(piece);
    },
    start() {
      startMs = performance.now();
    },
    line: () => packets.join(' | '),
  };
}
