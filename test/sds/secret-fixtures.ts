import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { buildCrl, buildOcspResponse, certIdFor, type Certificate, type OcspCertStatusSpec } from '../../src/pki/index.js';
import { TestCA, type IssuedLeaf } from '../helpers/test-ca.js';

export const MIN = 60_000;
export const HOUR = 60 * MIN;

/** A gateway's PKI made at run time: root → intermediate → server certificate for gw.example.com. */
export interface GatewayPki {
  root: TestCA;
  ca: TestCA;
  leaf: IssuedLeaf;
}

export async function gatewayPki(options: { mustStaple?: boolean; dnsName?: string } = {}): Promise<GatewayPki> {
  const root = await TestCA.root({ name: 'gateway test root' });
  const ca = await root.child({ name: 'gateway test issuing CA' });
  const leaf = await ca.issueServer([options.dnsName ?? 'gw.example.com'], options.mustStaple ? { mustStaple: true } : {});
  return { root, ca, leaf };
}

/** Another server certificate from the same CA (a "wrong certificate" for a staple). */
export function otherLeaf(pki: GatewayPki, dnsName = 'other.example.com'): Promise<IssuedLeaf> {
  return pki.ca.issueServer([dnsName]);
}

export interface StapleOptions {
  status?: OcspCertStatusSpec;
  /** Default: a minute ago. */
  thisUpdate?: Date;
  /** Default: in an hour; null leaves it out. */
  nextUpdate?: Date | null;
  hash?: 'sha1' | 'sha256';
  /** Sign with another CA's key (a bad signature for `cert`'s issuer). */
  signer?: TestCA;
}

/** A DER OCSP response about `cert`, signed by its issuing CA `ca` (or `options.signer`). */
export async function makeStaple(ca: TestCA, cert: Certificate, options: StapleOptions = {}): Promise<Buffer> {
  const now = Date.now();
  const signer = options.signer ?? ca;
  const thisUpdate = options.thisUpdate ?? new Date(now - MIN);
  const nextUpdate = options.nextUpdate === undefined ? new Date(now + HOUR) : options.nextUpdate;
  return buildOcspResponse({
    responder: { cert: signer.cert, signer: signer.signer },
    responses: [
      {
        certId: certIdFor(cert, ca.cert, options.hash ?? 'sha1'),
        status: options.status ?? 'good',
        thisUpdate,
        ...(nextUpdate ? { nextUpdate } : {}),
      },
    ],
    producedAt: thisUpdate,
  });
}

/** A CRL of `ca` listing `serials`. */
export async function makeCrl(ca: TestCA, serials: string[] = [], options: { nextUpdate?: Date } = {}): Promise<Buffer> {
  const now = Date.now();
  return buildCrl({
    issuer: ca.cert,
    signer: ca.signer,
    thisUpdate: new Date(now - MIN),
    nextUpdate: options.nextUpdate ?? new Date(now + 24 * HOUR),
    crlNumber: 1n,
    entries: serials.map((serial) => ({ serial, revokedAt: new Date(now - MIN) })),
  });
}

export type SecretData = Record<string, string | Uint8Array | undefined>;

/** The data of a kubernetes.io/tls secret for a leaf: chain (leaf + intermediate), key, and optional extras. */
export function tlsData(pki: GatewayPki, extra: SecretData = {}): SecretData {
  return { 'tls.crt': pki.leaf.chainPem, 'tls.key': pki.leaf.keyPem, ...extra };
}

export interface ManifestSpec {
  name: string;
  type?: string | null;
  policy?: string;
  annotations?: Record<string, string>;
  data?: SecretData;
  stringData?: Record<string, string>;
  namespace?: string;
}

/** A Secret manifest as `kubectl get secret -o yaml` prints it: data in base64. */
export function manifestObject(spec: ManifestSpec): Record<string, unknown> {
  const annotations = { ...(spec.annotations ?? {}), ...(spec.policy ? { 'kubernetes.io/ocsp-policy': spec.policy } : {}) };
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.data ?? {})) {
    if (v === undefined) continue;
    data[k] = Buffer.from(typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('base64');
  }
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: spec.name,
      namespace: spec.namespace ?? 'istio-system',
      ...(Object.keys(annotations).length ? { annotations } : {}),
    },
    ...(spec.type === null ? {} : { type: spec.type ?? 'kubernetes.io/tls' }),
    ...(Object.keys(data).length ? { data } : {}),
    ...(spec.stringData ? { stringData: spec.stringData } : {}),
  };
}

export function manifestYaml(...specs: ManifestSpec[]): string {
  return specs.map((s) => stringify(manifestObject(s))).join('---\n');
}

/** Writes a file atomically (temp + rename), as kubectl, editors and GitOps tools do. */
export function writeAtomic(path: string, content: string | Uint8Array): void {
  const hidden = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  writeFileSync(hidden, content);
  renameSync(hidden, path);
}

/**
 * Writes a secret in the kubelet's Secret-volume layout, exactly as the kubelet updates it: the new keys go in a
 * fresh timestamped folder, a `..data_tmp` symlink to it is renamed over `..data` (the atomic swap), the
 * top-level per-key symlinks point through `..data`, and the old folder is removed.
 */
export function writeMountedSecret(dir: string, data: SecretData): void {
  mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[-:.TZ]/g, '_')}${randomBytes(3).toString('hex')}`;
  const target = join(dir, stamp);
  mkdirSync(target);
  for (const [k, v] of Object.entries(data)) if (v !== undefined) writeFileSync(join(target, k), v);
  const link = join(dir, '..data');
  const old = existsSync(link) ? readlinkSync(link) : null;
  const tmpLink = join(dir, '..data_tmp');
  rmSync(tmpLink, { force: true });
  symlinkSync(stamp, tmpLink);
  renameSync(tmpLink, link);
  for (const k of Object.keys(data)) {
    if (data[k] === undefined) continue;
    const p = join(dir, k);
    let present = false;
    try {
      present = lstatSync(p).isSymbolicLink();
    } catch {
      present = false;
    }
    if (!present) symlinkSync(join('..data', k), p);
  }
  // Keys that went away: their top-level links are removed, as the kubelet does.
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.')) continue;
    if (data[name] === undefined) rmSync(join(dir, name), { force: true });
  }
  if (old && old !== stamp) rmSync(join(dir, old), { recursive: true, force: true });
}

/** Polls `cond` until it holds or `ms` pass. */
export async function waitUntil(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
