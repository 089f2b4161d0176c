export { ClientPool, type PoolOptions, type PoolReply, type PoolTarget } from './client-pool.ts';
export { ResponseReader, encodeRequest, RESPONSE_HEAD_BYTES_MAX, type ReadResult, type ResponseHead } from './response-reader.ts';
export { parseSimpleHead, type HeadParse, type SimpleHead, type SimpleHeaders } from './request-head.ts';
export { FastPath, type FastAnswer, type FastPathOptions, type FastRoutes } from './fast-path.ts';
