import { ErrorCodes, MeshError, systemClock, type Clock } from '../core/index.js';
import { checkX509Svid, SpiffeId, spiffeIdOf, validateChain, type Certificate } from '../pki/index.js';
import type { Ledger } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';
import type { Authenticator, CallContext, CallerIdentity } from './registration-types.js';

type SigningCa = Pick<CertificateAuthority, 'cert' | 'roots' | 'intermediates' | 'trustDomain'>;

export interface ClientCertificateAuthenticatorOptions {
  /**
   * The signing CA (its certificate, chain and trust bundle), or every signing CA of the server, one per trust
   * domain. Only SVIDs one of them issued renew, and only with the CA of their own trust domain.
   */
  ca: SigningCa | readonly SigningCa[];
  /** Where revocation is known: the leaf must be in it, unrevoked. */
  ledger: Pick<Ledger, 'get'>;
  clock?: Clock;
}

/**
 * Lets a workload renew with its current certificate: the peer leaf (already verified by the TLS stack, checked again
 * here because the transport's trust store may be wider than this CA) must be an X509-SVID of a trust domain signed
 * for here, within its validity, chaining to that trust domain's bundle, signed by that trust domain's signing CA,
 * recorded in the ledger under that CA and not revoked. The identity is the certificate's SPIFFE ID: renewal never
 * changes who a workload is, nor its trust domain (the registration authority then signs with the same CA).
 *
 * Returns null without a peer certificate; any failed check is UNAUTHENTICATED with the reason.
 */
export class ClientCertificateAuthenticator implements Authenticator {
  readonly method = 'client-certificate' as const;
  readonly #cas: readonly SigningCa[];
  readonly #ledger: Pick<Ledger, 'get'>;
  readonly #clock: Clock;

  constructor(options: ClientCertificateAuthenticatorOptions) {
    this.#cas = Array.isArray(options.ca) ? [...(options.ca as readonly SigningCa[])] : [options.ca as SigningCa];
    this.#ledger = options.ledger;
    this.#clock = options.clock ?? systemClock;
  }

  async authenticate(ctx: CallContext): Promise<CallerIdentity | null> {
    const presented = ctx.peerCertificates ?? [];
    const leaf = presented[0];
    if (!leaf) return null;
    const now = this.#clock.now();
    const who = `client certificate serial ${leaf.serial}`;

    // The CA is the one of the leaf's own trust domain; a leaf of no trust domain of ours is judged against the
    // main one, whose checks then say what is wrong with it.
    const named = spiffeIdOf(leaf)?.trustDomain;
    const ca = this.#cas.find((c) => c.trustDomain === named) ?? this.#cas[0]!;
    const problems = checkX509Svid(leaf, { trustDomain: ca.trustDomain });
    if (problems.length) {
      const domains = this.#cas.length === 1 ? `trust domain "${ca.trustDomain}"` : `a trust domain signed for here (${this.#cas.map((c) => `"${c.trustDomain}"`).join(', ')})`;
      throw denied(`${who} is not an X509-SVID of ${domains}: ${problems.map((p) => p.message).join('; ')}`);
    }
    // Validity first, by name: "expired" is the usual reason and the one a person acts on.
    if (now.getTime() > leaf.notAfter.getTime()) {
      throw denied(`${who} expired at ${leaf.notAfter.toISOString()}; authenticate with a token to get a new certificate`);
    }
    if (now.getTime() < leaf.notBefore.getTime()) {
      throw denied(`${who} is not valid before ${leaf.notBefore.toISOString()} (server time ${now.toISOString()})`);
    }
    const res = validateChain({
      leaf,
      intermediates: [...presented.slice(1), ...ca.intermediates],
      roots: ca.roots,
      at: now,
      purpose: 'client',
    });
    if (!res.ok) {
      throw denied(`${who} does not chain to the trust bundle of trust domain "${ca.trustDomain}": ${res.reasons.map((r) => r.message).join('; ')}`);
    }
    // Trusted is not enough: another CA under the same root (or a second trust domain's CA) has its own ledger.
    const issuer: Certificate | undefined = res.chain[1];
    if (!issuer || !issuer.subjectDer.equals(ca.cert.subjectDer) || !issuer.spkiDer.equals(ca.cert.spkiDer)) {
      throw denied(`${who} was issued by "${leaf.issuer}", not by this signing CA ("${ca.cert.subject}")`);
    }
    const entry = await this.#ledger.get(leaf.serial, ca.cert.issuerKeyId);
    if (!entry) throw denied(`${who} is not in this CA's ledger; it cannot be renewed`);
    if (entry.fingerprint !== leaf.fingerprint256) throw denied(`${who} does not match the certificate this CA recorded under that serial`);
    if (entry.status === 'revoked') {
      throw denied(
        `${who} was revoked at ${entry.revokedAt?.toISOString() ?? '?'} (${entry.revocationReason ?? 'unspecified'}); authenticate with a token instead`,
      );
    }
    return { spiffeId: SpiffeId.parse(leaf.sans.uri[0]!), method: 'client-certificate', principal: `certificate serial ${leaf.serial}` };
  }
}

function denied(message: string): MeshError {
  return new MeshError(ErrorCodes.UNAUTHENTICATED, message, { details: { method: 'client-certificate' } });
}
