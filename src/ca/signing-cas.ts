import { resolve } from 'node:path';
import { ErrorCodes, MeshError } from '../core/index.js';
import type { SpiffeId } from '../pki/index.js';
import type { CertificateIssuer } from './certificate-issuer.js';

/**
 * The signing CAs of one server, one per trust domain, the first being the main one (the CA of the data dir, which
 * also signs the server's own certificates). Which CA signs a workload's certificate follows from the trust domain
 * of the identity it authenticated as, and nothing else: a trust domain never signs with another's CA.
 *
 * Every CA must be distinct (its own key), since the ledger, the CRLs and the OCSP CertIDs tell CAs apart by key.
 */
export class SigningCas {
  readonly main: CertificateIssuer;
  readonly #byDomain = new Map<string, CertificateIssuer>();

  constructor(issuers: readonly CertificateIssuer[]) {
    if (issuers.length === 0) throw new MeshError(ErrorCodes.INTERNAL, 'SigningCas needs at least one CA');
    this.main = issuers[0]!;
    const byKey = new Map<string, CertificateIssuer>();
    for (const issuer of issuers) {
      const td = issuer.ca.trustDomain;
      const sameDomain = this.#byDomain.get(td);
      if (sameDomain) {
        throw new MeshError(ErrorCodes.CONFIG, `trust domain "${td}" has two signing CAs (${resolve(sameDomain.ca.dataDir)} and ${resolve(issuer.ca.dataDir)}); give it one`, {
          subject: td,
        });
      }
      const keyId = issuer.ca.cert.issuerKeyId;
      const sameKey = byKey.get(keyId);
      if (sameKey) {
        throw new MeshError(
          ErrorCodes.CONFIG,
          `trust domains "${sameKey.ca.trustDomain}" and "${td}" have the same signing CA (key id ${keyId}, in ${resolve(sameKey.ca.dataDir)} and ${resolve(issuer.ca.dataDir)}); each trust domain needs a CA of its own`,
          { subject: resolve(issuer.ca.dataDir) },
        );
      }
      this.#byDomain.set(td, issuer);
      byKey.set(keyId, issuer);
    }
  }

  /** The single CA of a server with one trust domain. */
  static of(issuer: CertificateIssuer): SigningCas {
    return new SigningCas([issuer]);
  }

  /** Every CA, the main one first. */
  get all(): CertificateIssuer[] {
    return [...this.#byDomain.values()];
  }

  /** Every trust domain signed for, the main one first. */
  get trustDomains(): string[] {
    return [...this.#byDomain.keys()];
  }

  forTrustDomain(trustDomain: string): CertificateIssuer | null {
    return this.#byDomain.get(trustDomain) ?? null;
  }

  /**
   * The CA that signs for an authenticated identity. PERMISSION_DENIED when its trust domain has none here: an
   * authenticator configured for a trust domain this server does not sign for is the only way to get there.
   */
  forIdentity(id: SpiffeId): CertificateIssuer {
    const issuer = this.#byDomain.get(id.trustDomain);
    if (issuer) return issuer;
    throw new MeshError(
      ErrorCodes.PERMISSION_DENIED,
      `identity ${id.toString()} is in trust domain "${id.trustDomain}", which this CA does not sign for (it signs for ${this.describe()})`,
      { subject: id.toString() },
    );
  }

  /** `"cluster.local"` or `"cluster.local", "partner.example"`: for messages. */
  describe(): string {
    return this.trustDomains.map((t) => `"${t}"`).join(', ');
  }
}
