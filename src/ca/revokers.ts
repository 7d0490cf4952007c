import { ErrorCodes, MeshError } from '../core/index.js';
import { normalizeSerial, opensslSerial, type RevocationReason } from '../pki/index.js';
import type { OnlineRevokeResult, Revoker } from './revoker.js';

export interface TrustDomainRevokeResult extends OnlineRevokeResult {
  /** The trust domain whose CA issued (and now revoked) the certificate. */
  trustDomain: string;
}

/**
 * Revocation for a server with several signing CAs (one per trust domain) sharing one ledger, each CA with its own
 * Revoker (its OCSP responder and CRL as listeners). The ledger keys certificates by (issuer key, serial), so a
 * serial alone names a certificate only while one CA has issued it: then it is revoked in that CA; a serial that
 * several CAs issued needs the trust domain named, and is never guessed.
 */
export class Revokers {
  readonly #byDomain = new Map<string, Revoker>();

  /** The main CA's Revoker first. */
  constructor(revokers: readonly Revoker[]) {
    if (revokers.length === 0) throw new MeshError(ErrorCodes.INTERNAL, 'Revokers needs at least one Revoker');
    for (const r of revokers) this.#byDomain.set(r.ca.trustDomain, r);
  }

  get main(): Revoker {
    return this.#byDomain.values().next().value!;
  }

  get trustDomains(): string[] {
    return [...this.#byDomain.keys()];
  }

  forTrustDomain(trustDomain: string): Revoker | null {
    return this.#byDomain.get(trustDomain) ?? null;
  }

  /**
   * The Revoker of `trustDomain` when given (INVALID_ARGUMENT naming the field when no CA here signs for it), else of
   * the one CA that issued `serial`: NOT_FOUND when none did, INVALID_ARGUMENT with `details.ambiguous` (the trust
   * domains) when several did.
   */
  async revokerFor(serialText: string, trustDomain?: string): Promise<Revoker> {
    if (trustDomain !== undefined) {
      const named = this.#byDomain.get(trustDomain);
      if (!named) {
        throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `trustDomain: "${trustDomain}" is not a trust domain this CA signs for (${this.#list(this.trustDomains)})`, {
          subject: 'trustDomain',
        });
      }
      return named;
    }
    if (this.#byDomain.size === 1) return this.main;
    const serial = normalizeSerial(serialText, 'serial');
    const holders: Revoker[] = [];
    for (const r of this.#byDomain.values()) if (await r.ledger.get(serial, r.ca.cert.issuerKeyId)) holders.push(r);
    if (holders.length === 1) return holders[0]!;
    const shown = opensslSerial(serial);
    if (holders.length === 0) {
      throw new MeshError(ErrorCodes.NOT_FOUND, `serial ${shown}: no certificate with this serial was issued by the CA of any trust domain here (${this.#list(this.trustDomains)})`, {
        subject: shown,
      });
    }
    const domains = holders.map((h) => h.ca.trustDomain);
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `serial ${shown} was issued by the CAs of trust domains ${this.#list(domains)}; name the one to revoke it in (trustDomain)`,
      { subject: 'trustDomain', details: { ambiguous: domains } },
    );
  }

  /** Revokes in the CA that issued the certificate (see revokerFor); then as Revoker.revoke. */
  async revoke(serial: string, reason: RevocationReason = 'unspecified', invalidityDate?: Date, trustDomain?: string): Promise<TrustDomainRevokeResult> {
    const revoker = await this.revokerFor(serial, trustDomain);
    return { ...(await revoker.revoke(serial, reason, invalidityDate)), trustDomain: revoker.ca.trustDomain };
  }

  #list(domains: string[]): string {
    return domains.map((d) => `"${d}"`).join(', ');
  }
}
