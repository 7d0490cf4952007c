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
  return ledger.revoke(serial, reason, ca.clock.now(), invalidityDate, ca.cert.issuerKeyId);
}
