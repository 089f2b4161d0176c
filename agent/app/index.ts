export { HttpApi, API_BATCH_BODY_BYTES_MAX, type AppBackend, type BatchResult, type HttpApiOptions, type Readiness } from './http-api.ts';
export { CopyWait, ACK_AFTER_LEVELS, type AckAfter, type CopyOptions } from './copy-wait.ts';
export { AppRunner, APP_CRASH_LOOP_EXITS, type AppRunnerOptions } from './app-runner.ts';
export { splitCborSeq, parseJsonLines, type BatchBody } from './batch-body.ts';
export { checkAccess, LIVENESS_PATH, type AccessPolicy, type AccessDecision } from './api-access.ts';
export { apiConnectionsCap, descriptorLimit, API_FD_RESERVE } from './api-listener.ts';
export { KvState, type KvStateOptions } from './kv-state.ts';
export { encodeOp, decodeOp, validKey, OP_ENTRY, OP_PUT, OP_DELETE, OP_MQTT, OP_SQLITE, KV_KEY_BYTES_MAX, type Op, type OpDecodeResult } from './ops.ts';
export { ApiClient, type ApiClientOptions } from './client.ts';
