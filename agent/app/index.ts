/**
 * The application's side: the local HTTP API and its listener, the key-value state, the client, MQTT ingest,
 * the metrics. The parts only the agent's wiring uses it imports directly: the write rules and the readiness
 * they give (write-rules.ts), what runs only on the primary (primary-work.ts: the application, the
 * forwarder, the SQLite capture), the hooks.
 */
export { HttpApi, API_BATCH_BODY_BYTES_MAX, type AppBackend, type BatchResult, type HttpApiOptions, type Readiness } from './http-api.ts';
export { CopyWait, ACK_AFTER_LEVELS, type AckAfter, type CopyOptions } from './copy-wait.ts';
export { AppRunner, APP_CRASH_LOOP_EXITS, type AppRunnerOptions } from './app-runner.ts';
export { splitCborSeq, parseJsonLines, type BatchBody } from './batch-body.ts';
export { checkAccess, AccessGate, LIVENESS_PATH, type AccessPolicy, type AccessDecision } from './api-access.ts';
export { apiConnectionsCap, descriptorLimit, API_FD_RESERVE } from './api-listener.ts';
export { KvState, type KvStateOptions } from './kv-state.ts';
export { encodeOp, decodeOp, peekOpCode, validKey, OP_ENTRY, OP_PUT, OP_DELETE, OP_MQTT, OP_SQLITE, KV_KEY_BYTES_MAX, type Op, type OpDecodeResult, type MqttProps } from './ops.ts';
export { ApiClient, type ApiClientOptions } from './client.ts';
export { Histogram, MetricsListener, agentHistograms, renderMetrics, METRICS_CONTENT_TYPE, type AgentHistograms } from './metrics.ts';
export { MqttIngest, type MqttIngestOptions } from './mqtt-ingest.ts';
