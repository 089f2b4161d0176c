export { MqttListener, type MqttCounters } from './server.ts';
export { Journal, type JournalOptions } from './journal.ts';
export { topicMatches } from './topics.ts';
