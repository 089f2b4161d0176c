/**
 * Reason and return codes of the local MQTT listener (MQTT 3.1.1 §3.2.2.3, MQTT 5.0 §2.4) and the short
 * acknowledgements it writes on its hottest path.
 */
import mqttPacket from 'mqtt-packet';
import type { LastgaspError } from '../../util/index.ts';

/** MQTT 5.0 reason codes (§2.4), and the 3.1.1 SUBACK failure. */
export const REASON = {
  success: 0x00,
  disconnectWithWill: 0x04,
  noSubscriptionExisted: 0x11,
  unspecified: 0x80,
  failure: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  implementationSpecific: 0x83,
  unsupportedProtocolVersion: 0x84,
  badUserNameOrPassword: 0x86,
  serverBusy: 0x89,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetTooLarge: 0x95,
  quotaExceeded: 0x97,
  topicAliasInvalid: 0x94,
  useAnotherServer: 0x9c,
  sharedSubscriptionsNotSupported: 0x9e,
  serverShuttingDown: 0x8b,
} as const;

/** Why a connection was closed for its input; each is a counter `mqttBad<Reason>`. */
export type BadInput = 'malformed' | 'before-connect' | 'oversize' | 'protocol' | 'keepalive' | 'internal';

/** MQTT 3.1.1 CONNACK return codes (§3.2.2.3) and their MQTT 5 counterparts. */
const CONNACK_CODES = {
  protocol: { v4: 1, v5: REASON.unsupportedProtocolVersion },
  identifier: { v4: 2, v5: 0x85 },
  auth: { v4: 4, v5: REASON.badUserNameOrPassword },
} as const;

const ACK_TYPES = { puback: 0x40, pubrec: 0x50, pubcomp: 0x70 } as const;

/** PUBACK, PUBREC or PUBCOMP; a success is the 4 bytes both versions read (MQTT 5.0 §3.4.2.1: reason 0 may be left out). */
export function ackBytes(cmd: keyof typeof ACK_TYPES, id: number, code: number, reason: string | undefined, version: 4 | 5): Uint8Array {
  if (code === 0 || version === 4) return new Uint8Array([ACK_TYPES[cmd], 2, id >> 8, id & 0xff]);
  return mqttPacket.generate({ cmd, messageId: id, reasonCode: code, ...(reason ? { properties: { reasonString: reason.slice(0, 200) } } : {}) }, { protocolVersion: 5 });
}

export function connackRefusal(version: 4 | 5, why: keyof typeof CONNACK_CODES): Uint8Array {
  const codes = CONNACK_CODES[why];
  return version === 5
    ? mqttPacket.generate({ cmd: 'connack', sessionPresent: false, reasonCode: codes.v5 }, { protocolVersion: 5 })
    : mqttPacket.generate({ cmd: 'connack', sessionPresent: false, returnCode: codes.v4 }, { protocolVersion: 4 });
}

/**
 * The CONNACK of an accepted client. No session is kept (sessionPresent 0); an MQTT 5 client that asked
 * for a session expiry is told 0 (§3.2.2.3.2), and learns the packet cap, that retained messages and
 * wildcards are served, and that topic aliases, shared subscriptions and subscription identifiers are not.
 */
export function connackSuccess(version: 4 | 5, packetBytesMax: number, assignedClientId: string | undefined, askedForSession: boolean): Uint8Array {
  if (version === 4) return mqttPacket.generate({ cmd: 'connack', sessionPresent: false, returnCode: 0 }, { protocolVersion: 4 });
  return mqttPacket.generate(
    {
      cmd: 'connack',
      sessionPresent: false,
      reasonCode: 0,
      properties: {
        maximumPacketSize: packetBytesMax,
        topicAliasMaximum: 0,
        retainAvailable: true,
        wildcardSubscriptionAvailable: true,
        sharedSubscriptionAvailable: false,
        subscriptionIdentifiersAvailable: false,
        ...(askedForSession ? { sessionExpiryInterval: 0 } : {}),
        ...(assignedClientId ? { assignedClientIdentifier: assignedClientId } : {}),
      },
    },
    { protocolVersion: 5 },
  );
}

/**
 * What a refused publish turns into. Permanent (the entry is too large: sending it again cannot help): an
 * MQTT 5 client gets a PUBACK/PUBREC with a failure reason. Anything else passes (a standby, a handoff, a
 * full log, a copy that came late): no acknowledgement at all and the connection closes, with this reason
 * in the MQTT 5 DISCONNECT, because a failure PUBACK would end the message's QoS flow and the client would
 * never send it again, while an unacknowledged one is sent again after the client reconnects, to this node
 * or, after a takeover, to the next leader.
 */
export function refusalReason(error: LastgaspError): { code: number; permanent: boolean } {
  switch (error.code) {
    case 'ENTRY_TOO_LARGE':
      return { code: REASON.implementationSpecific, permanent: true };
    case 'NOT_PRIMARY':
    case 'HANDING_OFF':
    case 'LEASE_LOST':
      return { code: REASON.useAnotherServer, permanent: false };
    case 'LOG_FULL':
    case 'LOG_THROTTLED':
    case 'LOG_NO_SPACE':
      return { code: REASON.quotaExceeded, permanent: false };
    default:
      return { code: REASON.serverBusy, permanent: false };
  }
}
