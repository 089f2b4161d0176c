import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Days a test certificate is valid. Two days covers a test run that straddles midnight and a clock that is
 * a little off, and keeps a leaked test key useless soon after.
 */
const CERT_VALIDITY_DAYS = 2;

/**
 * The key type of every test certificate. A P-256 key is generated in a millisecond where an RSA-2048 key
 * takes a noticeable fraction of a second on a busy 2-core machine, and both mosquitto (OpenSSL 3) and
 * Node's TLS accept it.
 */
const KEY_ALGORITHM = ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];

/** A certificate and its private key, as files (PEM) and as text for clients that take the PEM itself. */
export interface CertFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

/**
 * A throw-away public key infrastructure for one test: a CA, a server certificate for 127.0.0.1 and
 * localhost, and one client certificate per name (the name is the certificate's CN, which mosquitto's
 * `use_identity_as_username` turns into the MQTT username that the ACL checks).
 */
export interface TestPki {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: string;
  readonly server: CertFiles;
  readonly clients: Readonly<Record<string, CertFiles>>;
  /** The client certificate of `name`; throws if the PKI was made without it. */
  client(name: string): CertFiles;
  /** Issue one more client certificate from the same CA. */
  issueClient(name: string): Promise<CertFiles>;
}

/**
 * Generate a CA, a server certificate and client certificates with `openssl` into `dir`. Nothing here is
 * ever committed: every test makes its own keys in its own temporary directory. Two calls with different
 * directories give two unrelated CAs, which is how a test gets a certificate the broker must not trust.
 */
export async function createTestPki(dir: string, options: { clients?: readonly string[]; caName?: string } = {}): Promise<TestPki> {
  await mkdir(dir, { recursive: true });
  const caKeyFile = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.pem');
  await genKey(caKeyFile);
  await openssl([
    'req', '-x509', '-new', '-key', caKeyFile, '-out', caFile, '-days', String(CERT_VALIDITY_DAYS),
    '-subj', `/CN=${options.caName ?? 'lastgasp test CA'}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const issue = (name: string, extensions: string) => issueCert(dir, { caFile, caKeyFile }, name, extensions);
  // The server is reached as 127.0.0.1 in the tests and as localhost by hand; Node checks the SAN, not the CN.
  const server = await issue('server', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ].join('\n'));
  const clients: Record<string, CertFiles> = {};
  const issueClient = async (name: string) => {
    assertCommonName(name);
    const files = await issue(name, clientExtensions());
    clients[name] = files;
    return files;
  };
  for (const name of options.clients ?? []) await issueClient(name);
  return {
    dir,
    caFile,
    ca: await readFile(caFile, 'utf8'),
    server,
    clients,
    client(name) {
      const files = clients[name];
      if (!files) throw new Error(`test PKI in ${dir} has no client certificate for "${name}" (made: ${Object.keys(clients).join(', ') || 'none'})`);
      return files;
    },
    issueClient,
  };
}

function clientExtensions(): string {
  return ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth'].join('\n');
}

/** Names become the CN and a file name, so keep them to what a node name may be in lastgasp. */
function assertCommonName(name: string): void {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new Error(`test PKI: "${name}" is not a usable certificate name (letters, digits, - and _ only)`);
}

async function issueCert(dir: string, ca: { caFile: string; caKeyFile: string }, name: string, extensions: string): Promise<CertFiles> {
  const keyFile = join(dir, `${name}.key`);
  const csrFile = join(dir, `${name}.csr`);
  const certFile = join(dir, `${name}.pem`);
  const extFile = join(dir, `${name}.ext`);
  await genKey(keyFile);
  await openssl(['req', '-new', '-key', keyFile, '-out', csrFile, '-subj', `/CN=${name}`]);
  await writeFile(extFile, `${extensions}\n`);
  // A random serial per certificate: `-CAcreateserial` would share one serial file between concurrent calls.
  await openssl([
    'x509', '-req', '-in', csrFile, '-CA', ca.caFile, '-CAkey', ca.caKeyFile, '-out', certFile,
    '-days', String(CERT_VALIDITY_DAYS), '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-extfile', extFile,
  ]);
  return { certFile, keyFile, cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
}

async function genKey(keyFile: string): Promise<void> {
  await openssl(['genpkey', ...KEY_ALGORITHM, '-out', keyFile]);
}

async function openssl(args: readonly string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(error)}`, { cause: error });
  }
}
