/**
 * Constants of the lastgasp bridge protocol. Each value is defined in `firmware-bridge/PROTOCOL.md`, whose
 * section is named in the comment; the golden vectors in that file are checked against this code by the
 * tests, so the page and the code cannot drift apart.
 */

/** Frame delimiter (PROTOCOL.md §2): COBS removes every zero byte from the frame, so 0x00 marks its end. */
export const BRIDGE_DELIMITER = 0x00;

/** Protocol versions this implementation speaks (§7). Version 1 is the only one defined so far. */
export const BRIDGE_VERSION_MIN = 1;
export const BRIDGE_VERSION_MAX = 1;
/** HELLO and CAPABILITIES always travel with header version 1 so that any peer can read them (§7). */
export const BRIDGE_VERSION_HANDSHAKE = 1;

/** Header layout (§3): version u8, type u8, seq u16 big-endian. */
export const BRIDGE_OFFSET_VERSION = 0;
export const BRIDGE_OFFSET_TYPE = 1;
export const BRIDGE_OFFSET_SEQ = 2;
export const BRIDGE_HEADER_LEN = 4;
/** CRC-16/IBM-3740 trailer, big-endian (§4). */
export const BRIDGE_CRC_LEN = 2;
/** The smallest body is the empty CBOR map `a0` (§5). */
export const BRIDGE_BODY_LEN_MIN = 1;
export const BRIDGE_FRAME_LEN_MIN = BRIDGE_HEADER_LEN + BRIDGE_BODY_LEN_MIN + BRIDGE_CRC_LEN;
/**
 * Largest decoded frame (§2). 256 bytes fits the receive buffer of the smallest controllers we expect
 * (an 8-bit AVR with 2 KiB of RAM) and still carries telemetry for a 24-cell pack with 8 temperatures.
 */
export const BRIDGE_FRAME_LEN_MAX = 256;
export const BRIDGE_BODY_LEN_MAX = BRIDGE_FRAME_LEN_MAX - BRIDGE_HEADER_LEN - BRIDGE_CRC_LEN;
/** COBS adds one code byte per full block of 254 data bytes plus one (Cheshire & Baker 1999): 258. */
export const BRIDGE_ENCODED_LEN_MAX = BRIDGE_FRAME_LEN_MAX + Math.floor(BRIDGE_FRAME_LEN_MAX / 254) + 1;

/** Message types (§6). */
export const MessageType = {
  HELLO: 0x01,
  CAPABILITIES: 0x02,
  TELEMETRY: 0x10,
  POWER_EVENT: 0x11,
  HEARTBEAT: 0x20,
  HOLD: 0x30,
  CUT: 0x31,
  CANCEL: 0x32,
  ACK: 0x7e,
  NAK: 0x7f,
} as const;
export type MessageTypeCode = (typeof MessageType)[keyof typeof MessageType];

/** Power event kinds carried by POWER_EVENT key 0 (§6.4); the names are PowerEventKind's. */
export const PowerEventCode = {
  'ac-lost': 1,
  'ac-restored': 2,
  'low-battery': 3,
  brownout: 4,
  'power-off-pending': 5,
} as const;

/** NAK reason codes (§6.9). */
export const NakReason = {
  'unknown-type': 1,
  malformed: 2,
  version: 3,
  'out-of-range': 4,
  unsupported: 5,
  busy: 6,
  state: 7,
} as const;
export type NakReasonName = keyof typeof NakReason;

/** Feature bits in CAPABILITIES key 4 (§6.2). */
export const Feature = {
  CUT: 1 << 0,
  HOLD: 1 << 1,
  EVENTS: 1 << 2,
  CELLS: 1 << 3,
  TEMPERATURES: 1 << 4,
} as const;

/** Timing defaults (§8). */
/** How long a sender waits for ACK/NAK before sending the same frame again. A 258-byte frame takes 27 ms at 115200 baud and 269 ms at 9600, so 300 ms covers one frame each way at 115200 with room for a busy controller. */
export const BRIDGE_ACK_TIMEOUT_MS = 300;
/** Attempts per reliable frame including the first; after the last the command fails with "timeout". */
export const BRIDGE_SEND_ATTEMPTS_MAX = 4;
/** Receivers remember reliable frames this long to recognise retransmissions (longer than all attempts). */
export const BRIDGE_DEDUP_WINDOW_MS = 2 * BRIDGE_ACK_TIMEOUT_MS * BRIDGE_SEND_ATTEMPTS_MAX;
/** Remembered (type, seq) pairs; bounded so that a flood cannot grow memory. */
export const BRIDGE_DEDUP_ENTRIES_MAX = 16;
/** Heartbeat period each side announces by default. */
export const BRIDGE_HEARTBEAT_MS = 1000;
/** A peer is dead after this many heartbeat periods of silence; NUT's docs advise 3× the poll interval for DEADTIME. */
export const BRIDGE_HEARTBEAT_MISSES_MAX = 3;
/** Default telemetry period of a device. */
export const BRIDGE_TELEMETRY_MS = 250;
/** Reliable frames a sender may have outstanding at once (§8). */
export const BRIDGE_INFLIGHT_MAX = 4;
