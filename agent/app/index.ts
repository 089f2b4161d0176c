export { HttpApi, type AppBackend, type HttpApiOptions } from './http-api.ts';
export { KvState, type KvStateOptions } from './kv-state.ts';
export { encodeOp, decodeOp, validKey, OP_ENTRY, OP_PUT, OP_DELETE, KV_KEY_BYTES_MAX, type Op, type OpDecodeResult } from './ops.ts';
export { ApiClient, type ApiClientOptions } from './client.ts';
