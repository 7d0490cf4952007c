import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ErrorCodes, MeshError, describeError, systemClock, writeFileAtomic, type Clock } from '../core/index.js';
import {
  Certificate,
  exportPrivateKeyPem,
  generateKeyPair,
  issuerOf,
  keysMatch,
  parsePrivateKey,
  randomSerial,
  templateCertificateBuilder,
  toSigningKey,
  type Issuer,
  type KeyType,
  type SigningKey,
} from '../pki/index.js';

const DAY = 86_400_000;

/**
 * The bumping CA: a CA of its own (never the mesh CA) whose certificate the workloads behind the proxy trust and
 * whose key signs every mimic. Files in its folder: ca-cert.pem, ca-key.pem (0600).
 */
export interface BumpCa {
  dir: string;
  cert: Certificate;
  certPem: string;
  signer: SigningKey;
  issuer: Issuer;
}

export function bumpCaPaths(dir: string): { cert: string; key: string } {
  return { cert: join(dir, 'ca-cert.pem'), key: join(dir, 'ca-key.pem') };
}

export interface InitBumpCaOptions {
  keyType?: KeyType;
  /** Validity of the CA certificate, ms (default 10 years). */
  validityMs?: number;
  commonName?: string;
  clock?: Clock;
  /** Replace an existing CA (default: refuse). */
  force?: boolean;
}

/** Makes the bumping CA in `dir`: self-signed, CA:TRUE pathLen 0, keyCertSign + cRLSign. The key is written 0600 under a 0077 umask. */
export async function initBumpCa(dir: string, options: InitBumpCaOptions = {}): Promise<BumpCa> {
  const paths = bumpCaPaths(dir);
  if (!options.force && (existsSync(paths.cert) || existsSync(paths.key))) {
    throw new MeshError(ErrorCodes.CA_EXISTS, `${dir}: a bumping CA is already there (ca-cert.pem/ca-key.pem); remove it or pass --force`, {
      subject: dir,
    });
  }
  const clock = options.clock ?? systemClock;
  const keys = generateKeyPair(options.keyType ?? 'ec-p256');
  const signer = await toSigningKey(keys.privateKey);
  const now = clock.now().getTime();
  const der = templateCertificateBuilder.buildSync(
    {
      serial: randomSerial(),
      subject: [
        ['O', 'meshcert'],
        ['CN', options.commonName ?? 'meshcert bumping CA'],
      ],
      notBefore: new Date(now - 3_600_000),
      notAfter: new Date(now + (options.validityMs ?? 3650 * DAY)),
      publicKey: keys.publicKey,
      basicConstraints: { ca: true, pathLen: 0, critical: true },
      keyUsage: ['keyCertSign', 'cRLSign', 'digitalSignature'],
    },
    'self',
    signer,
  );
  const cert = Certificate.fromDer(der, paths.cert);
  // The key (and a folder made for it) under a 0077 umask, so that no moment exists where it is readable by others;
  // the certificate, which clients need, with the usual umask.
  const oldUmask = process.umask(0o077);
  try {
    writeFileAtomic(paths.key, exportPrivateKeyPem(keys.privateKey), { mode: 0o600 });
  } finally {
    process.umask(oldUmask);
  }
  writeFileAtomic(paths.cert, cert.pem, { mode: 0o644 });
  return { dir, cert, certPem: cert.pem, signer, issuer: issuerOf(cert) };
}

/** Loads the bumping CA from `dir`, checking that the key matches and the certificate is a CA valid now. */
export async function loadBumpCa(dir: string, options: { clock?: Clock; warn?: (message: string) => void } = {}): Promise<BumpCa> {
  const paths = bumpCaPaths(dir);
  if (!existsSync(paths.cert) || !existsSync(paths.key)) {
    throw new MeshError(ErrorCodes.CA_NOT_FOUND, `${dir}: no bumping CA here; create one with \`meshcert bump ca init --ca-dir ${dir}\``, {
      subject: dir,
    });
  }
  let certText: string;
  let keyText: string;
  try {
    certText = readFileSync(paths.cert, 'utf8');
    keyText = readFileSync(paths.key, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${dir}: cannot read the bumping CA: ${describeError(err)}`, { subject: dir, cause: err });
  }
  const mode = statSync(paths.key).mode & 0o777;
  if (mode & 0o077) options.warn?.(`${paths.key} is readable by group or others (mode ${mode.toString(8)}); chmod 600 it`);
  const cert = Certificate.parse(certText, paths.cert);
  const key = parsePrivateKey(keyText, paths.key);
  const problems: string[] = [];
  if (!keysMatch(key, cert.publicKey)) problems.push(`${paths.key} does not match ${paths.cert}`);
  if (!cert.isCA) problems.push(`${paths.cert} is not a CA certificate (basicConstraints CA:TRUE missing)`);
  const ku = cert.keyUsage;
  if (ku && !ku.includes('keyCertSign')) problems.push(`${paths.cert} lacks keyUsage keyCertSign`);
  const now = (options.clock ?? systemClock).now();
  if (cert.notAfter <= now) problems.push(`${paths.cert} expired on ${cert.notAfter.toISOString()}`);
  if (cert.notBefore > now) problems.push(`${paths.cert} is not valid before ${cert.notBefore.toISOString()}`);
  if (problems.length) {
    throw new MeshError(ErrorCodes.CA_INVALID, `bumping CA in ${dir} is not usable:\n  - ${problems.join('\n  - ')}`, { subject: dir, details: { problems } });
  }
  const signer = await toSigningKey(key);
  return { dir, cert, certPem: cert.pem, signer, issuer: issuerOf(cert) };
}

/**
 * A throwaway CA that nobody trusts, made in memory at start: mimics of invalid upstream certificates are signed by
 * it, so that the client sees a certificate failure as it would have without the proxy (what Squid does).
 */
export async function untrustedCa(clock: Clock = systemClock): Promise<BumpCa> {
  const keys = generateKeyPair('ec-p256');
  const signer = await toSigningKey(keys.privateKey);
  const now = clock.now().getTime();
  const der = templateCertificateBuilder.buildSync(
    {
      serial: randomSerial(),
      subject: [
        ['O', 'meshcert'],
        ['CN', 'meshcert bump: upstream certificate NOT VALID (untrusted throwaway CA)'],
      ],
      notBefore: new Date(now - 3_600_000),
      notAfter: new Date(now + 3650 * DAY),
      publicKey: keys.publicKey,
      basicConstraints: { ca: true, pathLen: 0, critical: true },
      keyUsage: ['keyCertSign', 'cRLSign'],
    },
    'self',
    signer,
  );
  const cert = Certificate.fromDer(der, 'untrusted throwaway CA');
  return { dir: '(memory)', cert, certPem: cert.pem, signer, issuer: issuerOf(cert) };
}

/** What `meshcert bump ca init` prints: how clients come to trust the bumping CA. */
export function trustInstructions(ca: BumpCa): string {
  const certFile = resolve(bumpCaPaths(ca.dir).cert);
  return [
    `bumping CA: ${ca.cert.subject}`,
    `  certificate: ${certFile}`,
    `  key:         ${resolve(bumpCaPaths(ca.dir).key)} (mode 0600; never share it)`,
    `  valid until: ${ca.cert.notAfter.toISOString()}`,
    `  SHA-256 fingerprint: ${ca.cert.fingerprint256}`,
    '',
    'Clients behind the proxy must trust this certificate (and only for this purpose):',
    `  curl:     curl -x http://PROXY:3128 --cacert ${certFile} https://example.com/`,
    `  openssl:  openssl s_client -proxy PROXY:3128 -connect example.com:443 -CAfile ${certFile}`,
    `  Debian/Ubuntu system store: cp ${certFile} /usr/local/share/ca-certificates/meshcert-bump.crt && update-ca-certificates`,
    `  RHEL/Fedora: cp ${certFile} /etc/pki/ca-trust/source/anchors/meshcert-bump.pem && update-ca-trust`,
    `  Node.js:  NODE_EXTRA_CA_CERTS=${certFile}    Python requests: REQUESTS_CA_BUNDLE=<bundle including it>`,
  ].join('\n');
}
