import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { ErrorCodes, MeshError, parseDuration, systemClock, wholeSeconds, writeFileAtomic, type Clock } from '../core/index.js';
import { readKeyFile, writeKeyFile } from '../keys/index.js';
import {
  Certificate,
  generateKeyPair,
  genericCertificateBuilder,
  keysMatch,
  randomSerial,
  toSigningKey,
  TrustDomain,
  validateChain,
  type KeyType,
} from '../pki/index.js';
import { CA_FILES, caExists, caPaths, readText, type CaSettings } from './ca-files.js';
import { caCertificateProblems } from './ca-profile.js';

export interface InitRootOptions {
  trustDomain?: string;
  keyType?: KeyType;
  /** Root lifetime, e.g. "10y". */
  ttl?: string;
  org?: string;
  publicUrl?: string;
  clock?: Clock;
}

export interface InitResult {
  dataDir: string;
  mode: 'self-signed' | 'plugin';
  cert: Certificate;
  files: string[];
}

function refuseExisting(dataDir: string): void {
  if (caExists(dataDir)) {
    throw new MeshError(
      ErrorCodes.CA_EXISTS,
      `${resolve(dataDir)}: a CA already exists here (${CA_FILES.caCert}); refusing to replace it. Use another --data-dir, or remove the folder first`,
      { subject: dataDir },
    );
  }
}

function checkPublicUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--public-url: "${url}" is not an http(s) URL`, { subject: '--public-url' });
  }
  return url.replace(/\/+$/, '');
}

function writeSettings(dataDir: string, settings: CaSettings): string {
  const path = caPaths(dataDir).settings;
  writeFileAtomic(path, `${JSON.stringify(settings, null, 2)}\n`);
  return path;
}

/** Creates a self-signed mesh root in `dataDir` with Istio's four file names. */
export async function initRootCa(dataDir: string, options: InitRootOptions = {}): Promise<InitResult> {
  refuseExisting(dataDir);
  const trustDomain = TrustDomain.parse(options.trustDomain ?? 'cluster.local', '--trust-domain').name;
  const publicUrl = checkPublicUrl(options.publicUrl);
  const ttlMs = parseDuration(options.ttl ?? '10y', '--ttl');
  const clock = options.clock ?? systemClock;
  const now = wholeSeconds(clock.now());
  const keys = generateKeyPair(options.keyType ?? 'ec-p256');
  const signer = await toSigningKey(keys.privateKey);
  const org = options.org ?? trustDomain;
  const der = await genericCertificateBuilder.build(
    {
      serial: randomSerial(),
      subject: [
        ['O', org],
        ['CN', 'meshcert root CA'],
      ],
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + ttlMs),
      publicKey: keys.publicKey,
      basicConstraints: { ca: true, critical: true },
      keyUsage: ['keyCertSign', 'cRLSign', 'digitalSignature'],
    },
    'self',
    signer,
  );
  const cert = Certificate.fromDer(der);
  const p = caPaths(dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // The key first, exclusively: if two inits race, one fails before anything else is written.
  writeKeyFile(p.caKey, keys.privateKey, { exclusive: true });
  writeFileAtomic(p.caCert, cert.pem);
  writeFileAtomic(p.rootCert, cert.pem);
  writeFileAtomic(p.certChain, cert.pem);
  const settings: CaSettings = { trustDomain, createdAt: now.toISOString(), mode: 'self-signed', ...(publicUrl ? { publicUrl } : {}) };
  const sp = writeSettings(dataDir, settings);
  return { dataDir, mode: 'self-signed', cert, files: [p.caCert, p.caKey, p.rootCert, p.certChain, sp] };
}

export interface PluginOptions {
  trustDomain?: string;
  publicUrl?: string;
  clock?: Clock;
  passphrase?: string;
}

/** What a plug-in folder holds once checked: the CA, its key, its chain to a root, and the trust bundle. */
export interface CheckedPlugin {
  cert: Certificate;
  chain: Certificate[];
  roots: Certificate[];
  keyPem: string;
  texts: { caCert: string; rootCert: string; certChain: string };
}

/**
 * Checks an Istio plug-in CA folder (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`) for
 * consistency: the key matches the certificate, the certificate may sign, and its chain reaches a root of the
 * bundle. Every problem found is listed in one error.
 */
export function checkPluginDir(pluginDir: string, options: { at?: Date; passphrase?: string } = {}): CheckedPlugin {
  const p = caPaths(pluginDir);
  for (const f of [p.caCert, p.caKey, p.rootCert, p.certChain]) {
    if (!existsSync(f)) {
      throw new MeshError(ErrorCodes.CA_PLUGIN, `${f}: missing; a plug-in CA folder holds ${Object.values(CA_FILES).join(', ')}`, { subject: f });
    }
  }
  const texts = { caCert: readText(p.caCert, 'CA certificate'), rootCert: readText(p.rootCert, 'root bundle'), certChain: readText(p.certChain, 'CA chain') };
  const cert = Certificate.parse(texts.caCert, p.caCert);
  const roots = Certificate.parseAll(texts.rootCert, p.rootCert);
  const chainFile = Certificate.parseAll(texts.certChain, p.certChain);
  const { key } = readKeyFile(p.caKey, options.passphrase);
  const problems: string[] = [];
  if (!keysMatch(key, cert.publicKey)) problems.push(`${p.caKey}: the private key does not match the public key of ${p.caCert}`);
  problems.push(...caCertificateProblems(cert, p.caCert));
  const at = options.at ?? new Date();
  if (!cert.validAt(at)) problems.push(`${p.caCert}: not valid now (valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`);
  for (const r of roots) if (!r.isCA) problems.push(`${p.rootCert}: "${r.subject}" is not a CA certificate`);
  // Istio's cert-chain.pem starts with ca-cert.pem; accept a chain that omits it.
  const intermediates = chainFile.filter((c) => !c.der.equals(cert.der));
  const result = validateChain({ leaf: cert, intermediates, roots, at, purpose: 'any' });
  if (!result.ok) {
    problems.push(
      `${p.certChain}: the chain of ${p.caCert} does not reach a root in ${p.rootCert}: ${result.reasons.map((r) => r.message).join('; ')}`,
    );
  }
  if (problems.length) {
    throw new MeshError(ErrorCodes.CA_PLUGIN, `plug-in CA in ${pluginDir} is not consistent:\n  - ${problems.join('\n  - ')}`, {
      subject: pluginDir,
      details: { problems },
    });
  }
  const keyPem = key.export({ format: 'pem', type: 'pkcs8' }) as string;
  return { cert, chain: result.ok ? result.chain : [cert], roots, keyPem, texts };
}

/** Adopts an enterprise intermediate: checks the plug-in folder, then copies it into `dataDir`. */
export async function adoptPluginCa(dataDir: string, pluginDir: string, options: PluginOptions = {}): Promise<InitResult> {
  const same = resolve(dataDir) === resolve(pluginDir);
  if (!same) refuseExisting(dataDir);
  const clock = options.clock ?? systemClock;
  const checked = checkPluginDir(pluginDir, { at: clock.now(), passphrase: options.passphrase });
  const spiffe = checked.cert.spiffeIds[0];
  const trustDomain = TrustDomain.parse(options.trustDomain ?? (spiffe ? new URL(spiffe).hostname : 'cluster.local'), '--trust-domain').name;
  const publicUrl = checkPublicUrl(options.publicUrl);
  const p = caPaths(dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const files: string[] = [];
  if (!same) {
    const { createPrivateKey } = await import('node:crypto');
    writeKeyFile(p.caKey, createPrivateKey(checked.keyPem), { exclusive: true });
    writeFileAtomic(p.caCert, checked.texts.caCert);
    writeFileAtomic(p.rootCert, checked.texts.rootCert);
    // Keep Istio's form: the chain file starts with the CA certificate itself.
    writeFileAtomic(p.certChain, checked.chain.map((c) => c.pem).join(''));
    files.push(p.caCert, p.caKey, p.rootCert, p.certChain);
  }
  const settings: CaSettings = { trustDomain, createdAt: clock.now().toISOString(), mode: 'plugin', ...(publicUrl ? { publicUrl } : {}) };
  files.push(writeSettings(dataDir, settings));
  return { dataDir, mode: 'plugin', cert: checked.cert, files };
}

