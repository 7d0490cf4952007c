import { createHash, type KeyObject } from 'node:crypto';
import { describeError, isMeshError } from '../core/index.js';
import {
  Certificate,
  Crl,
  decodePem,
  exportPrivateKeyPem,
  keysMatch,
  looksLikePem,
  parsePrivateKey,
} from '../pki/index.js';
import { secretError, secretWarning, type RawSecret, type SecretProblem } from './raw-secret.js';
import {
  OCSP_POLICY_ANNOTATION,
  assessStaple,
  decideStapling,
  effectivePolicy,
  parseOcspPolicy,
  type EffectivePolicy,
  type OcspPolicy,
  type StapleAssessment,
  type StaplingDecision,
} from './stapling-policy.js';

/** The data keys of a gateway secret, as Kubernetes, the seed design and Istio name them. */
export const SecretKeys = {
  TLS_CERT: 'tls.crt',
  TLS_KEY: 'tls.key',
  CA_CERT: 'ca.crt',
  /** The seed design's name for the DER OCSP response. */
  OCSP: 'tls.ocsp',
  /** The name Istio released (1.17+). */
  OCSP_STAPLE: 'tls.ocsp-staple',
  CA_CRL: 'ca.crl',
  GENERIC_CERT: 'cert',
  GENERIC_KEY: 'key',
  GENERIC_CA: 'cacert',
  GENERIC_CRL: 'crl',
} as const;

/** Istio's SDS resource names for Kubernetes secrets. */
export const KUBERNETES_RESOURCE_PREFIX = 'kubernetes://';
export const CACERT_SUFFIX = '-cacert';

/** The secrets types a gateway certificate may come in; others (docker config, SA tokens…) are refused. */
const GATEWAY_TYPES = new Set(['kubernetes.io/tls', 'Opaque']);

export interface TlsSide {
  /** Which keys it came from: `tls.crt`/`tls.key`, or Istio's generic `cert`/`key`. */
  certKey: string;
  keyKey: string;
  /** Leaf first, then intermediates, in file order. */
  chain: Certificate[];
  /** The chain re-encoded as PEM (what Envoy receives as certificate_chain). */
  chainPem: string;
  privateKey: KeyObject;
  /** PKCS#8 PEM, whatever form the secret held (PKCS#1, SEC1, DER): Envoy's private_key. */
  keyPem: string;
  /** The DER OCSP response, or null. */
  staple: Buffer | null;
  stapleKey: string | null;
  /** The leaf's issuer, found in the chain or in ca.crt; null when neither holds it. */
  issuer: Certificate | null;
  /** Set when `staple` was fetched from the certificate's OCSP responder rather than read from the secret. */
  fetchedStaple?: { url: string; fetchedAt: Date };
}

export interface CaSide {
  caKey: string;
  certs: Certificate[];
  pem: string;
  crlKey: string | null;
  crls: Crl[];
  /** Every CRL as `X509 CRL` PEM, concatenated (Envoy's validation_context.crl), or null. */
  crlPem: string | null;
}

/** A secret that parsed: the server side (`kubernetes://NAME`), the CA side (`…-cacert`), or both. */
export interface GatewaySecret {
  name: string;
  namespace: string | null;
  type: string;
  source: string;
  origin: string;
  layout: RawSecret['layout'];
  /** The stapling policy declared for it (annotation, or configuration for mounted folders), or null. */
  declaredPolicy: OcspPolicy | null;
  policySource: 'annotation' | 'configuration' | null;
  tls: TlsSide | null;
  ca: CaSide | null;
  /** Reported, but not reasons to refuse the version. */
  warnings: SecretProblem[];
  /** SHA-256 of the raw data, type and annotations: equal digests mean the same version. */
  digest: string;
}

export type BuildResult = { ok: true; secret: GatewaySecret } | { ok: false; name: string; source: string; problems: SecretProblem[] };

export interface BuildOptions {
  /** A policy for this secret from configuration: it wins over the annotation (mounted folders carry none). */
  policy?: OcspPolicy;
}

/** A digest of everything that makes a version, so that an unchanged re-read is recognised as such. */
export function rawDigest(raw: RawSecret, options: BuildOptions = {}): string {
  const h = createHash('sha256');
  h.update(`type=${raw.type}\n`);
  h.update(`policy=${options.policy ?? ''}\n`);
  for (const [k, v] of Object.entries(raw.annotations).sort(([a], [b]) => (a < b ? -1 : 1))) h.update(`a:${k}=${v}\n`);
  for (const k of [...raw.data.keys()].sort()) {
    h.update(`d:${k}=${raw.data.get(k)!.length}:`);
    h.update(raw.data.get(k)!);
  }
  return h.digest('hex');
}

function nonEmpty(raw: RawSecret, key: string): Buffer | null {
  const v = raw.data.get(key);
  return v && v.length > 0 ? v : null;
}

function firstPresent(raw: RawSecret, keys: string[]): string | null {
  return keys.find((k) => nonEmpty(raw, k) !== null) ?? null;
}

/** Every certificate of a key; errors name the secret and the key. */
function readCertificates(bytes: Buffer, where: string): Certificate[] {
  return Certificate.parseAll(looksLikePem(bytes) ? bytes.toString('utf8') : bytes, where);
}

/** A staple is DER; an `OCSP RESPONSE` PEM block is accepted as a courtesy. */
function stapleBytes(bytes: Buffer, where: string): Buffer {
  if (!looksLikePem(bytes)) return bytes;
  const block = decodePem(bytes.toString('utf8'), where).find((b) => b.label === 'OCSP RESPONSE');
  return block ? block.der : bytes;
}

function describe(err: unknown): string {
  return isMeshError(err) ? err.message : describeError(err);
}

/**
 * Turns a raw secret into the gateway model, collecting every problem rather than stopping at the first: keys
 * (Istio's generic `cert`/`key` win over `tls.crt`/`tls.key`, as Istio reads them), certificate chain, private
 * key (PKCS#8, PKCS#1 or SEC1) and that it belongs to the leaf, staple (`tls.ocsp-staple` or `tls.ocsp`), CA
 * certificates and CRLs (`ca.crt`/`ca.crl` or `cacert`/`crl`), the policy annotation. A decoder in the
 * grpc-js-xds manner: it returns problems instead of throwing, so that a bad secret is a report, not a crash.
 */
export function buildGatewaySecret(raw: RawSecret, options: BuildOptions = {}): BuildResult {
  const errors: SecretProblem[] = [];
  const warnings: SecretProblem[] = [];
  const where = (key: string) => `secret ${raw.name} (${raw.source}) key ${key}`;

  if (!GATEWAY_TYPES.has(raw.type)) {
    errors.push(secretError('type', `secret ${raw.name} (${raw.source}): type ${raw.type} is not a TLS secret; use kubernetes.io/tls or Opaque`));
  }

  let declaredPolicy: OcspPolicy | null = null;
  let policySource: GatewaySecret['policySource'] = null;
  const annotation = raw.annotations[OCSP_POLICY_ANNOTATION];
  if (annotation !== undefined) {
    try {
      declaredPolicy = parseOcspPolicy(annotation, `secret ${raw.name} (${raw.source}) annotation ${OCSP_POLICY_ANNOTATION}`);
      policySource = 'annotation';
    } catch (err) {
      errors.push(secretError('policy', describe(err)));
    }
  }
  if (options.policy) {
    if (declaredPolicy && declaredPolicy !== options.policy) {
      warnings.push(secretWarning('policy', `secret ${raw.name}: the configuration's policy ${options.policy} overrides the annotation's ${declaredPolicy}`));
    }
    declaredPolicy = options.policy;
    policySource = 'configuration';
  }

  // Server side. Istio reads cert/key first, then tls.crt/tls.key.
  let tls: TlsSide | null = null;
  const generic = nonEmpty(raw, SecretKeys.GENERIC_CERT) !== null || nonEmpty(raw, SecretKeys.GENERIC_KEY) !== null;
  const [certKey, keyKey] = generic ? [SecretKeys.GENERIC_CERT, SecretKeys.GENERIC_KEY] : [SecretKeys.TLS_CERT, SecretKeys.TLS_KEY];
  const certBytes = nonEmpty(raw, certKey);
  const keyBytes = nonEmpty(raw, keyKey);
  if (generic && (nonEmpty(raw, SecretKeys.TLS_CERT) || nonEmpty(raw, SecretKeys.TLS_KEY))) {
    warnings.push(secretWarning('keys', `secret ${raw.name}: has both cert/key and tls.crt/tls.key; cert/key are used, as Istio does`));
  }
  if (certBytes && !keyBytes) errors.push(secretError('keys', `secret ${raw.name} (${raw.source}): has ${certKey} but no ${keyKey}`, keyKey));
  if (keyBytes && !certBytes) errors.push(secretError('keys', `secret ${raw.name} (${raw.source}): has ${keyKey} but no ${certKey}`, certKey));
  if (raw.type === 'kubernetes.io/tls' && !certBytes && !keyBytes) {
    const empty = raw.data.has(SecretKeys.TLS_CERT) || raw.data.has(SecretKeys.TLS_KEY) ? ' (they are empty)' : '';
    errors.push(secretError('keys', `secret ${raw.name} (${raw.source}): a kubernetes.io/tls secret needs tls.crt and tls.key${empty}`, SecretKeys.TLS_CERT));
  }

  let chain: Certificate[] | null = null;
  let privateKey: KeyObject | null = null;
  if (certBytes) {
    try {
      chain = readCertificates(certBytes, where(certKey));
    } catch (err) {
      errors.push(secretError('certificate', describe(err), certKey));
    }
  }
  if (keyBytes) {
    try {
      privateKey = parsePrivateKey(looksLikePem(keyBytes) ? keyBytes.toString('utf8') : keyBytes, where(keyKey));
    } catch (err) {
      errors.push(secretError('privateKey', describe(err), keyKey));
    }
  }
  if (chain && privateKey && !keysMatch(privateKey, chain[0]!.publicKey)) {
    errors.push(
      secretError('keyMismatch', `secret ${raw.name} (${raw.source}): ${keyKey} does not belong to the certificate in ${certKey} (serial ${chain[0]!.serial}, "${chain[0]!.subject}")`, keyKey),
    );
  }
  if (chain) {
    const leaf = chain[0]!;
    if (leaf.isCA) warnings.push(secretWarning('certificate', `secret ${raw.name}: the first certificate of ${certKey} is a CA certificate, not a server certificate`, certKey));
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!chain[i]!.isIssuedBy(chain[i + 1]!)) {
        warnings.push(
          secretWarning('chain', `secret ${raw.name}: in ${certKey}, certificate ${i + 2} ("${chain[i + 1]!.subject}") did not issue certificate ${i + 1} ("${chain[i]!.subject}"); put the leaf first, then its issuer`, certKey),
        );
        break;
      }
    }
  }

  // Staple: Istio's released name first, then the seed design's.
  let staple: Buffer | null = null;
  const stapleKey = firstPresent(raw, [SecretKeys.OCSP_STAPLE, SecretKeys.OCSP]);
  if (stapleKey) {
    staple = stapleBytes(nonEmpty(raw, stapleKey)!, where(stapleKey));
    const other = stapleKey === SecretKeys.OCSP_STAPLE ? nonEmpty(raw, SecretKeys.OCSP) : null;
    if (other && !other.equals(nonEmpty(raw, stapleKey)!)) {
      warnings.push(secretWarning('staple', `secret ${raw.name}: tls.ocsp-staple and tls.ocsp differ; tls.ocsp-staple is used`, SecretKeys.OCSP));
    }
    if (!certBytes) warnings.push(secretWarning('staple', `secret ${raw.name}: has an OCSP staple but no certificate; it is ignored`, stapleKey));
  }

  // CA side.
  let ca: CaSide | null = null;
  const caKey = firstPresent(raw, [SecretKeys.GENERIC_CA, SecretKeys.CA_CERT]);
  const crlKey = firstPresent(raw, caKey === SecretKeys.GENERIC_CA ? [SecretKeys.GENERIC_CRL, SecretKeys.CA_CRL] : [SecretKeys.CA_CRL, SecretKeys.GENERIC_CRL]);
  let caCerts: Certificate[] | null = null;
  let crls: Crl[] = [];
  if (caKey) {
    try {
      caCerts = readCertificates(nonEmpty(raw, caKey)!, where(caKey));
    } catch (err) {
      errors.push(secretError('ca', describe(err), caKey));
    }
  }
  if (crlKey) {
    const bytes = nonEmpty(raw, crlKey)!;
    try {
      crls = Crl.parseAll(looksLikePem(bytes) ? bytes.toString('utf8') : bytes, where(crlKey));
    } catch (err) {
      errors.push(secretError('crl', describe(err), crlKey));
    }
    if (!caKey) errors.push(secretError('crl', `secret ${raw.name} (${raw.source}): has ${crlKey} but no ca.crt (or cacert) to go with it`, crlKey));
  }
  if (caKey && caCerts) {
    ca = {
      caKey,
      certs: caCerts,
      pem: caCerts.map((c) => c.pem).join(''),
      crlKey: crls.length ? crlKey : null,
      crls,
      crlPem: crls.length ? crls.map((c) => c.pem).join('') : null,
    };
  }

  if (!certBytes && !keyBytes && !caKey && errors.length === 0) {
    const keys = [...raw.data.keys()].sort();
    errors.push(
      secretError(
        'keys',
        `secret ${raw.name} (${raw.source}): found ${keys.length ? `keys ${keys.join(', ')}` : 'no keys'}; expected tls.crt and tls.key (or cert and key), and/or ca.crt (or cacert)`,
      ),
    );
  }

  if (chain && privateKey && errors.length === 0) {
    const leaf = chain[0]!;
    const issuer = chain.slice(1).find((c) => leaf.isIssuedBy(c)) ?? caCerts?.find((c) => leaf.isIssuedBy(c)) ?? null;
    tls = {
      certKey,
      keyKey,
      chain,
      chainPem: chain.map((c) => c.pem).join(''),
      privateKey,
      keyPem: exportPrivateKeyPem(privateKey),
      staple,
      stapleKey,
      issuer,
    };
  }

  if (errors.length) return { ok: false, name: raw.name, source: raw.source, problems: [...errors, ...warnings] };
  return {
    ok: true,
    secret: {
      name: raw.name,
      namespace: raw.namespace,
      type: raw.type,
      source: raw.source,
      origin: raw.origin,
      layout: raw.layout,
      declaredPolicy,
      policySource,
      tls,
      ca,
      warnings,
      digest: rawDigest(raw, options),
    },
  };
}

export interface CrlStatus {
  source: string;
  issuer: string;
  thisUpdate: Date;
  nextUpdate: Date | null;
  current: boolean;
  /** The CA certificate (of the same CA side) whose key signed it, or null. */
  signedBy: string | null;
  entries: number;
}

/** What the clock says about one version of a secret: stapling decisions, certificate and CRL validity. */
export interface SecretEvaluation {
  at: Date;
  /** Null for a CA-only secret. */
  policy: EffectivePolicy | null;
  staple: StapleAssessment | null;
  decision: StaplingDecision | null;
  crls: CrlStatus[];
  /** Time-dependent findings (expired certificate, stale CRL, staple reasons). */
  warnings: SecretProblem[];
  /** When calling evaluateSecret again may give another answer. */
  nextChangeAt: Date | null;
}

function earliest(...dates: Array<Date | null | undefined>): Date | null {
  const ts = dates.filter((d): d is Date => d instanceof Date).map((d) => d.getTime());
  return ts.length ? new Date(Math.min(...ts)) : null;
}

function iso(d: Date): string {
  return d.toISOString().replace('.000Z', 'Z');
}

/** Applies DESIGN.md's stapling table and validity rules to a secret at one instant. */
export function evaluateSecret(secret: GatewaySecret, at: Date): SecretEvaluation {
  const warnings: SecretProblem[] = [];
  let policy: EffectivePolicy | null = null;
  let staple: StapleAssessment | null = null;
  let decision: StaplingDecision | null = null;
  const t = at.getTime();
  const future: Array<Date | null> = [];
  if (secret.tls) {
    const leaf = secret.tls.chain[0]!;
    policy = effectivePolicy(secret.declaredPolicy, leaf);
    staple = assessStaple({
      cert: leaf,
      issuer: secret.tls.issuer,
      staple: secret.tls.staple,
      at,
      source: secret.tls.fetchedStaple
        ? `secret ${secret.name} staple fetched from ${secret.tls.fetchedStaple.url}`
        : `secret ${secret.name} key ${secret.tls.stapleKey ?? 'tls.ocsp-staple'}`,
    });
    decision = decideStapling(policy.policy, staple.state);
    future.push(staple.changesAt);
    if (t > leaf.notAfter.getTime()) {
      warnings.push(secretWarning('validity', `secret ${secret.name}: the certificate (serial ${leaf.serial}) expired at ${iso(leaf.notAfter)}`, secret.tls.certKey));
    } else if (t < leaf.notBefore.getTime()) {
      warnings.push(secretWarning('validity', `secret ${secret.name}: the certificate (serial ${leaf.serial}) is not valid before ${iso(leaf.notBefore)}`, secret.tls.certKey));
      future.push(leaf.notBefore);
    } else {
      future.push(new Date(leaf.notAfter.getTime() + 1));
    }
    if (staple.state === 'broken' || staple.state === 'expired') {
      for (const r of staple.reasons) warnings.push(secretWarning('staple', r, secret.tls.stapleKey ?? undefined));
    }
  }
  const crls: CrlStatus[] = [];
  for (const crl of secret.ca?.crls ?? []) {
    const signer = secret.ca!.certs.find((c) => crl.isIssuedBy(c)) ?? null;
    const current = crl.isCurrentAt(at);
    crls.push({
      source: crl.source,
      issuer: crl.issuer,
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      current,
      signedBy: signer?.subject ?? null,
      entries: crl.entries.length,
    });
    if (!signer) warnings.push(secretWarning('crl', `${crl.source}: no certificate in ${secret.ca!.caKey} signed this CRL (issuer "${crl.issuer}")`, secret.ca!.crlKey ?? undefined));
    if (!current) {
      const why = t < crl.thisUpdate.getTime() ? `is not valid before ${iso(crl.thisUpdate)}` : `is stale since ${iso(crl.nextUpdate!)}; peers will fail verification until it is replaced`;
      warnings.push(secretWarning('crl', `${crl.source}: ${why}`, secret.ca!.crlKey ?? undefined));
    }
    if (crl.nextUpdate && t <= crl.nextUpdate.getTime()) future.push(new Date(crl.nextUpdate.getTime() + 1));
    if (t < crl.thisUpdate.getTime()) future.push(crl.thisUpdate);
    const leaf = secret.tls?.chain[0];
    if (leaf && crl.issuerDer.equals(leaf.issuerDer) && crl.lookup(leaf.serial)) {
      warnings.push(secretWarning('crl', `${crl.source}: lists this secret's own certificate (serial ${leaf.serial}) as revoked`, secret.ca!.crlKey ?? undefined));
    }
  }
  return { at, policy, staple, decision, crls, warnings, nextChangeAt: earliest(...future) };
}

/** An SDS resource name of Istio's kind, resolved to the secret it comes from and the side of it. */
export interface ResourceTarget {
  resource: string;
  /** The secret to read. */
  secret: string;
  side: 'tls' | 'ca';
  /** For `kubernetes://NAME-cacert`: the secret to fall back on (NAME) when no NAME-cacert secret exists. */
  fallback?: string;
}

/**
 * `kubernetes://NAME` is the server side of secret NAME; `kubernetes://NAME-cacert` is the CA side of a separate
 * secret NAME-cacert when it exists, else the CA side (ca.crt/ca.crl) of NAME, as Istio resolves them. Other
 * names (`default`, `ROOTCA`, file:…) are not Kubernetes secrets: null.
 */
export function resourceTarget(resource: string): ResourceTarget | null {
  if (!resource.startsWith(KUBERNETES_RESOURCE_PREFIX)) return null;
  const name = resource.slice(KUBERNETES_RESOURCE_PREFIX.length);
  if (name === '' || name.includes('/')) return null;
  if (name.endsWith(CACERT_SUFFIX) && name.length > CACERT_SUFFIX.length) {
    return { resource, secret: name, side: 'ca', fallback: name.slice(0, -CACERT_SUFFIX.length) };
  }
  return { resource, secret: name, side: 'tls' };
}

export function tlsResourceName(secretName: string): string {
  return `${KUBERNETES_RESOURCE_PREFIX}${secretName}`;
}

export function caResourceName(secretName: string): string {
  return secretName.endsWith(CACERT_SUFFIX) ? `${KUBERNETES_RESOURCE_PREFIX}${secretName}` : `${KUBERNETES_RESOURCE_PREFIX}${secretName}${CACERT_SUFFIX}`;
}

/** The resources a secret can feed: its own names, and the base secret's -cacert when it is a NAME-cacert secret. */
export function resourceNamesOf(secretName: string): string[] {
  return secretName.endsWith(CACERT_SUFFIX) ? [caResourceName(secretName)] : [tlsResourceName(secretName), caResourceName(secretName)];
}

/** Re-encodes DER bytes of a staple for a report, shortened. */
export function stapleFingerprint(staple: Buffer): string {
  return createHash('sha256').update(staple).digest('hex').slice(0, 16);
}

/**
 * The secret with a staple fetched from its responder in place of its own (tls.fetchedStaple says so): another
 * version, with another digest, so that SDS pushes it and caches keyed by digest tell the two apart.
 */
export function withFetchedStaple(secret: GatewaySecret, fetched: { der: Buffer; url: string; fetchedAt: Date }): GatewaySecret {
  if (!secret.tls) return secret;
  const digest = createHash('sha256').update(secret.digest).update('\nfetched-staple:').update(fetched.der).digest('hex');
  return { ...secret, digest, tls: { ...secret.tls, staple: fetched.der, fetchedStaple: { url: fetched.url, fetchedAt: fetched.fetchedAt } } };
}
