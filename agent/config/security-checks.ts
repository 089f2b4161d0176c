/**
 * Config rules that keep a gateway's secrets and API private (issue 9): found by `config check`, before
 * anything starts.
 */
import { isLoopbackHost, splitHostPort } from '../util/index.ts';
import type { Issue } from './schema-dsl.ts';
import type { AgentConfig } from './schema.ts';

/** Socket permission bits for others: write access is what connecting to a Unix socket needs. */
const SOCKET_OTHERS_BITS = 0o007;

export function securityChecks(config: AgentConfig, issues: Issue[]): void {
  config.replication.brokers.forEach((broker, index) => {
    const parsed = new URL(broker.url);
    if (parsed.username || parsed.password) {
      // The URL ends up in error lines and in /v1/status; a password inside it would too.
      issues.push({ path: `replication.brokers[${index}].url`, message: 'holds credentials; remove them from the URL and set replication.username with replication.passwordFile (or passwordEnv)' });
    }
  });
  const api = config.api;
  if (api.headersTimeoutMs > api.requestTimeoutMs) {
    // Node refuses a server whose headers may take longer than the whole request.
    issues.push({ path: 'api.headersTimeoutMs', message: `${api.headersTimeoutMs} is more than api.requestTimeoutMs (${api.requestTimeoutMs}); the headers are part of the request` });
  }
  const tls = api.tls;
  if (Boolean(tls.certFile) !== Boolean(tls.keyFile)) {
    issues.push({ path: tls.certFile ? 'api.tls.keyFile' : 'api.tls.certFile', message: 'is required with the other (HTTPS needs both a certificate and its key)' });
  }
  if (api.listen.startsWith('unix:')) {
    if (tls.certFile || tls.keyFile) issues.push({ path: 'api.tls', message: 'is for a TCP listen; a Unix socket does not use TLS (remove api.tls)' });
    const mode = parseInt(api.socketMode, 8);
    if ((mode & SOCKET_OTHERS_BITS) !== 0) {
      issues.push({ path: 'api.socketMode', message: `${api.socketMode} lets every user on the gateway write and pause replication; use 0660 and give applications api.socketGroup` });
    }
    return;
  }
  const { host } = splitHostPort(api.listen);
  if (!isLoopbackHost(host) && !(tls.certFile && tls.keyFile)) {
    issues.push({ path: 'api.listen', message: `"${api.listen}" is reachable from the network; set api.tls.certFile and api.tls.keyFile (HTTPS; the bearer token in api.tokenFile is always required on TCP), or listen on unix:/run/lastgasp/api.sock or 127.0.0.1` });
  }
}
