/**
 * A message as the listener routes and journals it: topic, payload, QoS, retain, and the MQTT 5 properties
 * that belong to the message rather than to the hop (ops.ts MqttProps; MQTT 5.0 §3.3.2.3: topic alias and
 * subscription identifiers are per connection and stay behind).
 */
import { Buffer } from 'node:buffer';
import type { IPublishPacket } from 'mqtt-packet';
import type { MqttProps } from '../ops.ts';

export type QoS = 0 | 1 | 2;

export interface Message {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly qos: QoS;
  readonly retain: boolean;
  /** The kept MQTT 5 properties, without `retain` (undefined when there are none). */
  readonly props: MqttProps | undefined;
}

type PublishProperties = NonNullable<IPublishPacket['properties']>;

/** A view of a Buffer's bytes as a plain Uint8Array (what codecs and the log take). */
export function bytesOf(buffer: Uint8Array | string): Uint8Array {
  if (typeof buffer === 'string') return new TextEncoder().encode(buffer);
  return buffer.constructor === Uint8Array ? buffer : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** The kept properties of a PUBLISH's (or a Will's) MQTT 5 properties; undefined when none is set. */
export function keptProps(properties: PublishProperties | undefined): MqttProps | undefined {
  if (!properties) return undefined;
  const { payloadFormatIndicator, messageExpiryInterval, contentType, responseTopic, correlationData, userProperties } = properties;
  const props: { -readonly [K in keyof MqttProps]: MqttProps[K] } = {};
  if (payloadFormatIndicator !== undefined) props.payloadFormatIndicator = Boolean(payloadFormatIndicator);
  if (messageExpiryInterval !== undefined) props.messageExpiryInterval = messageExpiryInterval;
  if (contentType !== undefined) props.contentType = contentType;
  if (responseTopic !== undefined) props.responseTopic = responseTopic;
  if (correlationData !== undefined) props.correlationData = new Uint8Array(bytesOf(correlationData));
  if (userProperties !== undefined && Object.keys(userProperties).length > 0) props.userProperties = { ...userProperties };
  return Object.keys(props).length > 0 ? props : undefined;
}

/** What the log keeps of a message: its kept properties, and `retain` when it was set. */
export function journalProps(message: Message): MqttProps | undefined {
  if (!message.retain) return message.props;
  return { ...message.props, retain: true };
}

/** The MQTT 5 properties of a PUBLISH that delivers the message to a subscriber. */
export function publishProperties(props: MqttProps | undefined): PublishProperties | undefined {
  if (!props) return undefined;
  const { retain: _retain, correlationData, userProperties, ...rest } = props;
  return {
    ...rest,
    ...(correlationData ? { correlationData: Buffer.from(correlationData.buffer, correlationData.byteOffset, correlationData.byteLength) } : {}),
    ...(userProperties ? { userProperties: userProperties as Record<string, string | string[]> } : {}),
  };
}
