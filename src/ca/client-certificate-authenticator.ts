import { ErrorCodes, MeshError, systemClock, type Clock } from '../core/index.js';
import { checkX509Svid, SpiffeId, validateChain, type Certificate } from '../pki/index.js';
import type { Ledger } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';
import type { Authenticator, CallContext, CallerIdentity } from './registration-types.js';

export interface ClientCertificateAuthenticatorOptions {
  /** The signing CA: its certificate, chain and trust bundle. Only SVIDs it issued itself renew. */
  ca: Pick<CertificateAuthority, 'cert' | 'roots' | 'intermediates' | 'trustDomain'>;
  /** Where revocation is known: the leaf must be in it, unrevoked. */
  ledger: Pick<Ledger, 'get'>;
  clock?: Clock;
}

/**
 * Lets a workload renew with its current certificate: the peer leaf (already verified by the TLS stack, checked again
 * here because the transport's trust store may be wider than this CA) must be an X509-SVID of this trust domain,
 * within its validity, chaining to the trust bundle, signed by this signing CA, recorded in the ledger and not
 * revoked. The identity is the certificate's SPIFFE ID: renewal never changes who a workload is.
 *
 * Returns null without a peer certificate; any failed check is UNAUTHENTICATED with the reason.
 */
export class ClientCertificateAuthenticator implements Authenticator {
  readonly method = 'client-certificate' as const;
  readonly #ca: ClientCertificateAuthenticatorOptions['ca'];
  readonly #ledger: Pick<Ledger, 'get'>;
  readonly #clock: Clock;

  constructor(options: ClientCertificateAuthenticatorOptions) {
    this.#ca = options.ca;
    this.#ledger = options.ledger;
    this.#clock = options.clock ?? systemClock;
  }

  async authenticate(ctx: CallContext): Promise<CallerIdentity | null> {
    const presented = ctx.peerCertificates ?? [];
    const leaf = presented[0];
    if (!leaf) return null;
    const ca = this.#ca;
    const now = this.#clock.now();
    const who = `client certificate serial ${leaf.serial}`;

    const problems = checkX509Svid(leaf, { trustDomain: ca.trustDomain });
    if (problems.length) {
      throw denied(`${who} is not an X509-SVID of trust domain "${ca.trustDomain}": ${problems.map((p) => p.message).join('; ')}`);
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
      throw denied(`${who} does not chain to this CA's trust bundle: ${res.reasons.map((r) => r.message).join('; ')}`);
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
