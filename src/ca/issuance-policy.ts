import type { KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError, formatDuration, wholeSeconds } from '../core/index.js';
import {
  SpiffeId,
  assertKeyStrength,
  checkDnsName,
  checkIp,
  describeKey,
  type CertificateSpec,
  type Csr,
  type San,
} from '../pki/index.js';
import type { CertificateProfile } from '../store/index.js';

export type LeafProfile = Extract<CertificateProfile, 'svid' | 'server' | 'client'>;

/** What a caller asks for. The CA decides what it gets: identities are checked here, never copied from a CSR blindly. */
export interface IssueRequest {
  /** A verified CSR (proof of possession); or `publicKey` for a key the caller made itself. */
  csr?: Csr;
  publicKey?: KeyObject;
  spiffeId?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Requested lifetime in ms; the policy's default when absent. */
  ttlMs?: number;
  profile?: LeafProfile;
  mustStaple?: boolean;
}

export interface IssuancePolicyOptions {
  trustDomain: string;
  defaultTtlMs: number;
  maxTtlMs: number;
  /** Certificates are backdated by this much for clock skew, never before the CA's own notBefore. */
  backdateMs: number;
}

export const DEFAULT_POLICY: Omit<IssuancePolicyOptions, 'trustDomain'> = {
  defaultTtlMs: 24 * 3_600_000,
  maxTtlMs: 90 * 24 * 3_600_000,
  backdateMs: 60_000,
};

export interface PlannedCertificate {
  spec: Omit<CertificateSpec, 'serial'>;
  profile: LeafProfile;
  identity: string | null;
  /** Set when the lifetime was shortened, with the reason, for the caller to report. */
  ttlNote: string | null;
}

/**
 * Turns a request into a certificate spec under the CA's policy: SPIFFE IDs must parse and belong to the CA's
 * trust domain, DNS and IP SANs must be well formed, keys strong enough, and the lifetime within the policy and
 * the CA's own validity.
 */
export function planCertificate(
  request: IssueRequest,
  policy: IssuancePolicyOptions,
  ca: { maxNotAfter: Date; notBefore: Date; crlUrl?: string; ocspUrl?: string },
  now: Date,
): PlannedCertificate {
  const publicKey = request.csr ? request.csr.publicKey : request.publicKey;
  if (!publicKey || (request.csr && request.publicKey)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'an issuance request needs exactly one of a CSR or a public key');
  }
  if (request.csr) request.csr.assertValid();
  else assertKeyStrength(publicKey, 'public key');

  const dnsNames = (request.dnsNames ?? []).map((d, i) => checkDnsName(d, `dns[${i}]`));
  const ips = (request.ipAddresses ?? []).map((a, i) => checkIp(a, `ip[${i}]`));
  const profile: LeafProfile = request.profile ?? (request.spiffeId ? 'svid' : 'server');
  const sans: San[] = [];
  let identity: string | null = null;
  let subject: CertificateSpec['subject'] = [];

  if (profile === 'svid') {
    if (!request.spiffeId) throw new MeshError(ErrorCodes.POLICY, 'an X509-SVID needs a SPIFFE ID (--spiffe spiffe://TRUST-DOMAIN/…)');
    const id = SpiffeId.parse(request.spiffeId, 'spiffe');
    if (id.trustDomain !== policy.trustDomain) {
      throw new MeshError(
        ErrorCodes.POLICY,
        `spiffe: "${id.toString()}" is in trust domain "${id.trustDomain}", but this CA signs for "${policy.trustDomain}"`,
        { subject: 'spiffe' },
      );
    }
    identity = id.toString();
    // X509-SVID: exactly one URI SAN; DNS/IP SANs may follow for workloads also reached by name.
    sans.push({ type: 'uri', value: identity });
  } else {
    if (request.spiffeId) throw new MeshError(ErrorCodes.POLICY, `a ${profile} certificate carries no SPIFFE ID; use the svid profile`);
    if (dnsNames.length === 0 && ips.length === 0) {
      throw new MeshError(ErrorCodes.POLICY, `a ${profile} certificate needs at least one DNS name (--dns) or IP address (--ip)`);
    }
    identity = dnsNames[0] ?? ips[0] ?? null;
    const cn = dnsNames[0] ?? ips[0];
    if (cn && cn.length <= 64) subject = [['CN', cn]];
  }
  sans.push(...dnsNames.map((value) => ({ type: 'dns' as const, value })), ...ips.map((value) => ({ type: 'ip' as const, value })));

  const requested = request.ttlMs ?? policy.defaultTtlMs;
  if (!(requested > 0)) throw new MeshError(ErrorCodes.TTL, `ttl: ${requested} ms is not a positive lifetime`, { subject: 'ttl' });
  let ttlNote: string | null = null;
  let ttl = requested;
  if (ttl > policy.maxTtlMs) {
    ttl = policy.maxTtlMs;
    ttlNote = `lifetime ${formatDuration(requested)} shortened to the policy maximum ${formatDuration(policy.maxTtlMs)}`;
  }
  const start = wholeSeconds(now);
  if (start.getTime() >= ca.maxNotAfter.getTime()) {
    throw new MeshError(ErrorCodes.TTL, `the CA expired at ${ca.maxNotAfter.toISOString()}; it cannot issue`, { subject: 'ca' });
  }
  let notAfter = new Date(start.getTime() + ttl);
  if (notAfter.getTime() > ca.maxNotAfter.getTime()) {
    notAfter = ca.maxNotAfter;
    ttlNote = `lifetime capped at the CA's own expiry ${ca.maxNotAfter.toISOString()}`;
  }
  const notBefore = new Date(Math.max(start.getTime() - policy.backdateMs, ca.notBefore.getTime()));

  const rsa = describeKey(publicKey).kind === 'rsa';
  const extKeyUsage = profile === 'svid' ? ['serverAuth', 'clientAuth'] : profile === 'server' ? ['serverAuth'] : ['clientAuth'];
  return {
    profile,
    identity,
    ttlNote,
    spec: {
      subject,
      notBefore,
      notAfter,
      publicKey,
      basicConstraints: { ca: false, critical: true },
      keyUsage: rsa ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'],
      extKeyUsage,
      sans,
      // RFC 5280 §4.2.1.6: with an empty subject the SAN extension is critical.
      sanCritical: Array.isArray(subject) && subject.length === 0,
      ...(ca.crlUrl ? { crlDistributionPoints: [ca.crlUrl] } : {}),
      ...(ca.ocspUrl ? { ocspUrls: [ca.ocspUrl] } : {}),
      ...(request.mustStaple ? { mustStaple: true } : {}),
    },
  };
}

/** The delegated OCSP signer's plan: no identity, one purpose. */
export interface PlannedOcspSigner {
  spec: Omit<CertificateSpec, 'serial'>;
  profile: 'ocsp-signer';
  ttlNote: string | null;
}

/**
 * The certificate of a delegated OCSP responder (RFC 6960 §4.2.2.2), kept apart from the leaf policy: it names no
 * workload, so none of the SPIFFE/DNS rules apply. EKU id-kp-OCSPSigning is what makes clients accept it in the
 * CA's place; id-pkix-ocsp-nocheck tells them not to ask about the signer itself (there would be no answer that
 * does not depend on it), which is safe only because it lives a few days and is renewed at half life.
 */
export function planOcspSigner(
  publicKey: KeyObject,
  ttlMs: number,
  policy: IssuancePolicyOptions,
  ca: { maxNotAfter: Date; notBefore: Date },
  now: Date,
): PlannedOcspSigner {
  assertKeyStrength(publicKey, 'OCSP signer key');
  if (!(ttlMs > 0)) throw new MeshError(ErrorCodes.TTL, `OCSP signer lifetime ${ttlMs} ms is not positive`, { subject: 'ocsp.signerTtl' });
  const start = wholeSeconds(now);
  if (start.getTime() >= ca.maxNotAfter.getTime()) {
    throw new MeshError(ErrorCodes.TTL, `the CA expired at ${ca.maxNotAfter.toISOString()}; it cannot issue an OCSP signer`, { subject: 'ca' });
  }
  let notAfter = new Date(start.getTime() + ttlMs);
  let ttlNote: string | null = null;
  if (notAfter.getTime() > ca.maxNotAfter.getTime()) {
    notAfter = ca.maxNotAfter;
    ttlNote = `OCSP signer lifetime capped at the CA's own expiry ${ca.maxNotAfter.toISOString()}`;
  }
  const notBefore = new Date(Math.max(start.getTime() - policy.backdateMs, ca.notBefore.getTime()));
  return {
    profile: 'ocsp-signer',
    ttlNote,
    spec: {
      subject: [
        ['O', policy.trustDomain],
        ['CN', 'meshcert OCSP responder'],
      ],
      notBefore,
      notAfter,
      publicKey,
      basicConstraints: { ca: false, critical: true },
      keyUsage: ['digitalSignature'],
      extKeyUsage: ['ocspSigning'],
      ocspNoCheck: true,
    },
  };
}
