import { wholeSeconds } from '../core/index.js';
import { Crl, buildCrl } from '../pki/index.js';
import type { Ledger } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';

export interface MadeCrl {
  crl: Crl;
  der: Buffer;
  crlNumber: bigint;
}

/**
 * Signs a CRL of every unexpired revoked certificate this CA issued, with the next CRL number from the ledger.
 * Expired certificates are left out (RFC 5280 §3.3 allows it), which keeps the CRL small in a mesh of short-lived
 * certificates.
 */
export async function makeCrl(ca: CertificateAuthority, ledger: Ledger, options: { validityMs: number }): Promise<MadeCrl> {
  const now = wholeSeconds(ca.clock.now());
  const issuerKeyId = ca.cert.issuerKeyId;
  const revoked = await ledger.listRevoked(issuerKeyId, now);
  const crlNumber = await ledger.nextCrlNumber(issuerKeyId);
  const der = await buildCrl({
    issuer: ca.cert,
    signer: ca.signer,
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + options.validityMs),
    crlNumber,
    entries: revoked.map((e) => ({
      serial: e.serial,
      revokedAt: e.revokedAt ?? now,
      ...(e.revocationReason ? { reason: e.revocationReason } : {}),
      ...(e.invalidityDate ? { invalidityDate: e.invalidityDate } : {}),
    })),
  });
  return { crl: Crl.fromDer(der, 'CRL'), der, crlNumber };
}
