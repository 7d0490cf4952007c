import type { KeyObject } from 'node:crypto';
import { Certificate, formatSan, randomSerial, sanSetToList, type CertificateSpec } from '../pki/index.js';
import type { CertificateProfile, Ledger, LedgerEntry } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';
import { DEFAULT_POLICY, planCertificate, planOcspSigner, type IssuancePolicyOptions, type IssueRequest, type LeafProfile } from './issuance-policy.js';

export interface IssuedCertificate {
  cert: Certificate;
  /** Leaf then intermediates, no root: Istio's cert-chain.pem. */
  chain: Certificate[];
  chainPem: string;
  /** Every trusted root: Istio's root-cert.pem. */
  trustBundlePem: string;
  entry: LedgerEntry;
  profile: LeafProfile;
  ttlNote: string | null;
}

/**
 * Issues leaf certificates: policy, build, sign, then the ledger. A certificate is returned only once its ledger
 * row is committed, so revocation, CRLs and OCSP always know every certificate in circulation.
 */
export class CertificateIssuer {
  readonly policy: IssuancePolicyOptions;

  constructor(
    readonly ca: CertificateAuthority,
    readonly ledger: Ledger,
    policy: Partial<IssuancePolicyOptions> = {},
  ) {
    this.policy = { ...DEFAULT_POLICY, trustDomain: ca.trustDomain, ...policy };
  }

  async issue(request: IssueRequest): Promise<IssuedCertificate> {
    const plan = planCertificate(
      request,
      this.policy,
      { maxNotAfter: this.ca.maxNotAfter, notBefore: this.ca.cert.notBefore, crlUrl: this.ca.crlUrl, ocspUrl: this.ca.ocspUrl },
      this.ca.clock.now(),
    );
    const { cert, entry } = await this.#signAndRecord(plan.spec, plan.profile, plan.identity);
    const chain = [cert, ...this.ca.intermediates];
    return {
      cert,
      chain,
      chainPem: chain.map((c) => c.pem).join(''),
      trustBundlePem: this.ca.trustBundlePem,
      entry,
      profile: plan.profile,
      ttlNote: plan.ttlNote,
    };
  }

  /**
   * The responder's own delegated OCSP signer (see planOcspSigner), recorded in the ledger with profile
   * 'ocsp-signer' like any certificate this CA signs, so that it too can be listed and revoked.
   */
  async issueOcspSigner(publicKey: KeyObject, ttlMs: number): Promise<{ cert: Certificate; entry: LedgerEntry; ttlNote: string | null }> {
    const plan = planOcspSigner(publicKey, ttlMs, this.policy, { maxNotAfter: this.ca.maxNotAfter, notBefore: this.ca.cert.notBefore }, this.ca.clock.now());
    const { cert, entry } = await this.#signAndRecord(plan.spec, plan.profile, null);
    return { cert, entry, ttlNote: plan.ttlNote };
  }

  async #signAndRecord(spec: Omit<CertificateSpec, 'serial'>, profile: CertificateProfile, identity: string | null): Promise<{ cert: Certificate; entry: LedgerEntry }> {
    const der = await this.ca.builder.build({ ...spec, serial: randomSerial() }, this.ca.issuer, this.ca.signer);
    const cert = Certificate.fromDer(der, 'issued certificate');
    const entry = await this.ledger.record({
      serial: cert.serial,
      issuerKeyId: this.ca.cert.issuerKeyId,
      subject: cert.subject,
      sans: sanSetToList(cert.sans).map(formatSan),
      identity,
      profile,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      fingerprint: cert.fingerprint256,
      pem: cert.pem,
    });
    return { cert, entry };
  }
}
