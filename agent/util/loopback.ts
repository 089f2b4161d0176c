/**
 * Loopback names and addresses: what the local API accepts in a `Host` header without configuration, and
 * what `api.listen` may bind without TLS. The whole of 127.0.0.0/8 is loopback on Linux (RFC 1122 3.2.1.3).
 */
import { isIP } from 'node:net';

export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || bare === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(bare);
  return false;
}

/** `host:port` or `[v6]:port` into its parts (the port is NaN when there is none). */
export function splitHostPort(text: string): { host: string; port: number } {
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    const rest = text.slice(end + 1);
    return { host: text.slice(1, end), port: rest.startsWith(':') ? Number(rest.slice(1)) : NaN };
  }
  const colon = text.lastIndexOf(':');
  // A bare IPv6 address without brackets has several colons and no port.
  if (colon < 0 || text.indexOf(':') !== colon) return { host: text, port: NaN };
  return { host: text.slice(0, colon), port: Number(text.slice(colon + 1)) };
}
