import { ErrorCodes, MeshError, wholeSeconds } from '../core/index.js';
import {
  buildOcspResponse,
  certIdForSerial,
  type CertId,
  type Certificate,
  type OcspCertStatusSpec,
  type OcspHashAlgorithm,
  type OcspResponder,
} from '../pki/index.js';
import type { Ledger } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';

/** The status the ledger gives a serial of this CA: good, revoked (time, reason), or unknown when never issued. */
export async function ledgerStatus(ca: CertificateAuthority, ledger: Ledger, serial: string): Promise<OcspCertStatusSpec> {
  const entry = await ledger.get(serial, ca.cert.issuerKeyId);
  if (!entry) return 'unknown';
  if (entry.status === 'revoked') {
    return { revoked: { at: entry.revokedAt ?? ca.clock.now(), ...(entry.revocationReason ? { reason: entry.revocationReason } : {}) } };
  }
  return 'good';
}

export interface MakeOcspOptions {
  validityMs: number;
  hash?: OcspHashAlgorithm;
  /** Defaults to the CA itself; the online responder passes its delegated signer. */
  responder?: OcspResponder;
  nonce?: Uint8Array;
}

/** Signs an OCSP response for one certificate of this CA, with the status the ledger holds. */
export async function makeOcspResponse(
  ca: CertificateAuthority,
  ledger: Ledger,
  target: Certificate | CertId,
  options: MakeOcspOptions,
): Promise<{ der: Buffer; status: OcspCertStatusSpec; certId: CertId }> {
  let certId: CertId;
  if ('der' in target) {
    if (!target.isIssuedBy(ca.cert)) {
      throw new MeshError(ErrorCodes.OCSP_BUILD, `certificate ${target.serial} (${target.subject || target.spiffeIds[0] || 'no subject'}) was not issued by this CA (${ca.cert.subject})`, {
        subject: 'cert',
      });
    }
    certId = certIdForSerial(target.serial, ca.cert, options.hash ?? 'sha1');
  } else {
    certId = target;
  }
  const status = await ledgerStatus(ca, ledger, certId.serial);
  const now = wholeSeconds(ca.clock.now());
  const der = await buildOcspResponse({
    responder: options.responder ?? { cert: ca.cert, signer: ca.signer },
    responses: [{ certId, status, thisUpdate: now, nextUpdate: new Date(now.getTime() + options.validityMs) }],
    producedAt: now,
    ...(options.nonce ? { nonce: options.nonce } : {}),
  });
  return { der, status, certId };
}
