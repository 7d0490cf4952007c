import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/** The file names Istio uses for a CA (its `cacerts` secret), so that a plug-in CA folder drops in unchanged. */
export const CA_FILES = {
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  rootCert: 'root-cert.pem',
  certChain: 'cert-chain.pem',
} as const;

/** meshcert's own settings for the CA beside Istio's files: trust domain, the URL written into AIA/CDP. */
export const CA_SETTINGS_FILE = 'ca.json';

export interface CaSettings {
  trustDomain: string;
  /** Base URL of the OCSP responder and CRL endpoint written into issued certificates, if any. */
  publicUrl?: string;
  createdAt: string;
  mode: 'self-signed' | 'plugin';
}

export function caPaths(dataDir: string) {
  return {
    caCert: join(dataDir, CA_FILES.caCert),
    caKey: join(dataDir, CA_FILES.caKey),
    rootCert: join(dataDir, CA_FILES.rootCert),
    certChain: join(dataDir, CA_FILES.certChain),
    settings: join(dataDir, CA_SETTINGS_FILE),
  };
}

/** Whether the folder has a ca.json (meshcert's settings), as opposed to Istio's four files alone. */
export function hasSettings(dataDir: string): boolean {
  return existsSync(caPaths(dataDir).settings);
}

export function caExists(dataDir: string): boolean {
  return existsSync(caPaths(dataDir).caCert) || existsSync(caPaths(dataDir).caKey);
}

export function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MeshError(
      code === 'ENOENT' ? ErrorCodes.CA_NOT_FOUND : ErrorCodes.FILE_READ,
      `${path}: cannot read ${what}: ${code === 'ENOENT' ? 'no such file' : describeError(err)}`,
      { subject: path, cause: err },
    );
  }
}

/**
 * The CA's ca.json. A folder laid out by Istio alone has none: `defaultTrustDomain` applies then (Istio's own
 * default unless the caller knows better, e.g. the trust domain a `meshcert serve` config gives the folder).
 */
export function readSettings(dataDir: string, defaultTrustDomain = 'cluster.local'): CaSettings {
  const path = caPaths(dataDir).settings;
  if (!existsSync(path)) {
    return { trustDomain: defaultTrustDomain, createdAt: new Date(0).toISOString(), mode: 'plugin' };
  }
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<CaSettings>;
    if (typeof parsed.trustDomain !== 'string') throw new Error('field "trustDomain" is missing');
    return { trustDomain: parsed.trustDomain, publicUrl: parsed.publicUrl, createdAt: String(parsed.createdAt ?? ''), mode: parsed.mode ?? 'plugin' };
  } catch (err) {
    throw new MeshError(ErrorCodes.CA_INVALID, `${path}: unreadable CA settings: ${describeError(err)}`, { subject: path, cause: err });
  }
}
