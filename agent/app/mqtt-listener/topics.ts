/**
 * Topic names, filters and the retained messages of the local MQTT listener (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7).
 */
import type { Message } from './message.ts';

/** Retained messages kept in memory: enough for the last value of every topic of a gateway's applications. */
export const MQTT_RETAINED_TOPICS_MAX = 10_000;

/** MQTT topic filter matching (MQTT 3.1.1 §4.7): "+" one level, "#" the rest; "$" topics only by name. */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && !filter.startsWith('$')) return false;
  const filterLevels = filter.split('/');
  const topicLevels = topic.split('/');
  for (let i = 0; i < filterLevels.length; i++) {
    const level = filterLevels[i];
    if (level === '#') return true;
    if (i >= topicLevels.length) return false;
    if (level !== '+' && level !== topicLevels[i]) return false;
  }
  return filterLevels.length === topicLevels.length;
}

/** A topic filter a client may subscribe to (§4.7.1): "#" only last and alone in its level, "+" alone in its level. */
export function validFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  return levels.every((level, index) => (level.includes('#') ? level === '#' && index === levels.length - 1 : !level.includes('+') || level === '+'));
}

/** A topic name one may publish to (§4.7.3): no wildcards, no NUL, not empty. */
export function validTopicName(topic: string): boolean {
  return topic.length > 0 && !/[+#\u0000]/.test(topic);
}

/**
 * The retained message of each topic (§3.3.1.3): a retained PUBLISH replaces it, one with an empty payload
 * removes it. Bounded: past MQTT_RETAINED_TOPICS_MAX topics a new one is not kept (counted by the caller).
 */
export class RetainedStore {
  private readonly messages = new Map<string, Message>();

  /** False when the message was not kept because the store is full. */
  put(message: Message): boolean {
    if (message.payload.length === 0) {
      this.messages.delete(message.topic);
      return true;
    }
    if (!this.messages.has(message.topic) && this.messages.size >= MQTT_RETAINED_TOPICS_MAX) return false;
    this.messages.set(message.topic, message);
    return true;
  }

  matching(filter: string): Message[] {
    const out: Message[] = [];
    for (const message of this.messages.values()) if (topicMatches(filter, message.topic)) out.push(message);
    return out;
  }
}
