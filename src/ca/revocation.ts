import { wholeSeconds } from '../core/index.js';
import { normalizeSerial, type RevocationReason } from '../pki/index.js';
import type { Ledger, RevokeResult } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';

/**
 * Revokes a certificate this CA issued. Revoking twice is harmless (the first time and reason stand, except that
 * keyCompromise may strengthen an earlier reason); an unknown serial is an error naming it.
 */
export async function revokeCertificate(
  ca: CertificateAuthority,
  ledger: Ledger,
  serialText: string,
  reason: RevocationReason = 'unspecified',
  invalidityDate?: Date,
): Promise<RevokeResult> {
  const serial = normalizeSerial(serialText, 'serial');
  // Whole seconds: the time appears in CRLs and OCSP responses, which carry no fractions.
  return ledger.revoke(serial, reason, wholeSeconds(ca.clock.now()), invalidityDate && wholeSeconds(invalidityDate), ca.cert.issuerKeyId);
}
