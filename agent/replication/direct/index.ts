export { DirectPath, type DirectPathConfig, type DirectPathOptions } from './direct-path.ts';
export { DirectListener } from './listener.ts';
export { PeerLink } from './peer-link.ts';
export { selfSignedCertificateDer, selfSignedCertificatePem } from './self-cert.ts';
export { tlsIdentity, identifyPeer } from './peer-auth.ts';
export { encodeFrame, FrameAccumulator, DIRECT_KIND_ACK, DIRECT_KIND_BATCH, DIRECT_KIND_LEADER, DIRECT_FRAME_HEADER_BYTES, type DirectKind, type FrameResult } from './frames.ts';
