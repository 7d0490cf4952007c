import { createHash, type KeyObject } from 'node:crypto';
import { wholeSeconds } from '../core/index.js';
import { Certificate, encodePem, formatSan, randomSerial, rememberCsrPublicKey, type CertificateSpec } from '../pki/index.js';
import type { CertificateProfile, Ledger, LedgerEntry } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';
import { DEFAULT_POLICY, planCertificate, planOcspSigner, type IssuancePolicyOptions, type IssueRequest, type LeafProfile } from './issuance-policy.js';

/**
 * A certificate just issued and recorded. The PEM forms are ready; the parsed `cert` is made only when asked for,
 * since parsing costs more than building and signing on the issuance hot path.
 */
export class IssuedCertificate {
  #cert: Certificate | undefined;

  constructor(
    readonly serial: string,
    readonly der: Buffer,
    /** The leaf's PEM. */
    readonly pem: string,
    /** PEM of the intermediates a leaf presents after itself (no root). */
    readonly intermediatePems: string[],
    /** Every trusted root: Istio's root-cert.pem. */
    readonly trustBundlePem: string,
    readonly entry: LedgerEntry,
    readonly profile: LeafProfile | 'ocsp-signer',
    readonly ttlNote: string | null,
    private readonly intermediateCerts: Certificate[],
  ) {}

  get cert(): Certificate {
    return (this.#cert ??= Certificate.fromDer(this.der, 'issued certificate'));
  }

  /** Leaf then intermediates, no root. */
  get chain(): Certificate[] {
    return [this.cert, ...this.intermediateCerts];
  }

  /** Leaf and intermediates, no root: Istio's cert-chain.pem. */
  get chainPem(): string {
    return [this.pem, ...this.intermediatePems].join('');
  }
}

function subjectText(subject: CertificateSpec['subject']): string {
  return typeof subject === 'string' ? subject : subject.map(([k, v]) => `${k}=${v}`).join(', ');
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
    // The builder may reuse the SPKI bytes the CSR already carries instead of exporting the key again.
    if (request.csr) rememberCsrPublicKey(request.csr);
    const plan = planCertificate(
      request,
      this.policy,
      { maxNotAfter: this.ca.maxNotAfter, notBefore: this.ca.cert.notBefore, crlUrl: this.ca.crlUrl, ocspUrl: this.ca.ocspUrl },
      this.ca.clock.now(),
    );
    return this.#signAndRecord(plan.spec, plan.profile, plan.identity, plan.ttlNote);
  }

  /**
   * The responder's own delegated OCSP signer (see planOcspSigner), recorded in the ledger with profile
   * 'ocsp-signer' like any certificate this CA signs, so that it too can be listed and revoked.
   */
  async issueOcspSigner(publicKey: KeyObject, ttlMs: number): Promise<IssuedCertificate> {
    const plan = planOcspSigner(publicKey, ttlMs, this.policy, { maxNotAfter: this.ca.maxNotAfter, notBefore: this.ca.cert.notBefore }, this.ca.clock.now());
    return this.#signAndRecord(plan.spec, plan.profile as 'ocsp-signer', null, plan.ttlNote);
  }

  async #signAndRecord(
    spec: Omit<CertificateSpec, 'serial'>,
    profile: LeafProfile | 'ocsp-signer',
    identity: string | null,
    ttlNote: string | null,
  ): Promise<IssuedCertificate> {
    const serial = randomSerial();
    const der = await this.ca.builder.build({ ...spec, serial }, this.ca.issuer, this.ca.signer);
    const pem = encodePem('CERTIFICATE', der);
    // The ledger row comes from the spec the certificate was built from (both builders write exactly it, to the
    // second), not from parsing the result again.
    const entry = await this.ledger.record({
      serial,
      issuerKeyId: this.ca.cert.issuerKeyId,
      subject: subjectText(spec.subject),
      sans: (spec.sans ?? []).map(formatSan),
      identity,
      profile: profile as CertificateProfile,
      notBefore: wholeSeconds(spec.notBefore),
      notAfter: wholeSeconds(spec.notAfter),
      fingerprint: createHash('sha256').update(der).digest('hex'),
      pem,
    });
    const intermediates = this.ca.intermediates;
    return new IssuedCertificate(serial, der, pem, intermediates.map((c) => c.pem), this.ca.trustBundlePem, entry, profile, ttlNote, intermediates);
  }
}
