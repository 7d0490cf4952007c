import { createHash, type KeyObject } from 'node:crypto';
import { describeError, isMeshError } from '../core/index.js';
import type { Certificate } from './certificate.js';
import { certIdFor, describeCertId } from './ocsp-request.js';
import { OcspResponse, type OcspSingleResponse } from './ocsp-response.js';
import { EKU } from './oids.js';
import { isSupportedSignatureAlgorithm, signatureAlgorithmName, verifySignature } from './signature-algorithms.js';

export type OcspVerifyReasonCode = 'parse' | 'responseStatus' | 'signature' | 'responder' | 'certId' | 'status' | 'freshness' | 'nonce';

export interface OcspVerifyReason {
  code: OcspVerifyReasonCode;
  message: string;
}

export type OcspCertStatus = OcspSingleResponse['status'];

export interface OcspVerifyOptions {
  /** The certificate the response must be about. */
  cert: Certificate;
  /** Its issuer: the response must be signed by it or by its delegated OCSP signer. */
  issuer: Certificate;
  /** The instant to judge freshness at (inject the Clock's now). */
  at: Date;
  /** The nonce we sent; the response must echo it. Leave out for staples and cached responses. */
  nonce?: Uint8Array;
  /** Tolerated clock difference on both ends of the validity window. Default 5 minutes, as `openssl ocsp`. */
  maxClockSkewMs?: number;
  /**
   * How long a response without nextUpdate stays fresh after its thisUpdate (RFC 6960 §4.2.2.1: without it, newer
   * information is always available). Default 1 day. Envoy treats such a response as expired at once; pass 0 to do
   * the same.
   */
  maxAgeWithoutNextUpdateMs?: number;
  /** A status other than good is a failure (reason 'status'). Default true: that is the staple rule of DESIGN.md. */
  requireGood?: boolean;
  /** Names the response in messages when it is given as bytes (e.g. "secret gw/tls tls.ocsp-staple"). */
  source?: string;
}

export type OcspVerifyResult =
  | {
      ok: true;
      status: OcspCertStatus;
      single: OcspSingleResponse;
      thisUpdate: Date;
      nextUpdate: Date | null;
      /** The certificate whose key signed the response: the issuer or its delegated signer. */
      responder: Certificate;
    }
  | {
      ok: false;
      reasons: OcspVerifyReason[];
      /** What is known despite the failure: a revoked or unknown status, the validity window. */
      status?: OcspCertStatus;
      single?: OcspSingleResponse;
      thisUpdate?: Date;
      nextUpdate?: Date | null;
    };

export const DEFAULT_OCSP_CLOCK_SKEW_MS = 5 * 60_000;
export const DEFAULT_OCSP_MAX_AGE_WITHOUT_NEXT_UPDATE_MS = 86_400_000;

/** Checks the BasicOCSPResponse signature with `key`; a string explains why it does not verify. */
function checkSignature(resp: OcspResponse, key: KeyObject): true | string {
  const oid = resp.signatureAlgorithmOid ?? '';
  if (!isSupportedSignatureAlgorithm(oid)) return `signature algorithm ${signatureAlgorithmName(oid)} is not accepted`;
  return verifySignature(oid, resp.tbsResponseData!, resp.signature!, key) || `${signatureAlgorithmName(oid)} signature does not verify`;
}

function sameCert(a: Certificate, b: Certificate): boolean {
  return a.der.equals(b.der);
}

/** Candidates named by the responder ID: by SHA-1 of the key bits, or by subject Name bytes. */
function responderCandidates(resp: OcspResponse, issuer: Certificate): Certificate[] {
  const rid = resp.responderId!;
  const all = [issuer, ...resp.certificates.filter((c) => !sameCert(c, issuer))];
  if (rid.type === 'keyHash') {
    return all.filter((c) => createHash('sha1').update(c.publicKeyBits).digest().equals(rid.keyHash));
  }
  return all.filter((c) => c.subjectDer.equals(rid.der));
}

function fmt(d: Date): string {
  return d.toISOString().replace('.000Z', 'Z');
}

function describeResponder(resp: OcspResponse): string {
  const rid = resp.responderId!;
  return rid.type === 'keyHash' ? `key hash ${rid.keyHash.toString('hex')}` : `name "${rid.name}"`;
}

/**
 * Decides whether to believe an OCSP response about `cert` (RFC 6960 §3.2 and DESIGN.md's staple rules): it parses,
 * its status is successful, it is signed by the issuer or by a delegated signer that the issuer certified with the
 * OCSP-signing EKU (and that is valid at `at`), it names this certificate's serial and issuer with a SHA-1 or
 * SHA-256 CertID, it says good (unless requireGood is false), it is fresh (thisUpdate ≤ at ≤ nextUpdate, with
 * skew; without nextUpdate, fresh for maxAgeWithoutNextUpdateMs after thisUpdate), and it echoes our nonce when we
 * sent one. Never throws for a bad response: every failure is a reason, so that a broken staple is reported, not
 * raised. Runs synchronously (node:crypto), cheap enough to run on every staple reload.
 */
export function verifyOcspResponse(input: OcspResponse | Uint8Array, options: OcspVerifyOptions): OcspVerifyResult {
  const { cert, issuer, at } = options;
  const skew = options.maxClockSkewMs ?? DEFAULT_OCSP_CLOCK_SKEW_MS;
  const maxAge = options.maxAgeWithoutNextUpdateMs ?? DEFAULT_OCSP_MAX_AGE_WITHOUT_NEXT_UPDATE_MS;
  const requireGood = options.requireGood ?? true;
  const reasons: OcspVerifyReason[] = [];

  let resp: OcspResponse;
  try {
    resp = input instanceof OcspResponse ? input : OcspResponse.parse(input, options.source);
  } catch (err) {
    return { ok: false, reasons: [{ code: 'parse', message: isMeshError(err) ? err.message : `not an OCSP response: ${describeError(err)}` }] };
  }
  const src = resp.source;
  if (resp.responseStatus !== 'successful') {
    return { ok: false, reasons: [{ code: 'responseStatus', message: `${src}: responder answered ${resp.responseStatus}, not successful` }] };
  }

  // Who signed it.
  const candidates = responderCandidates(resp, issuer);
  let responder: Certificate | null = null;
  if (candidates.length === 0) {
    reasons.push({ code: 'responder', message: `${src}: no certificate in the response or the issuer matches responder ${describeResponder(resp)}` });
  } else {
    const failures: string[] = [];
    for (const c of candidates) {
      const sig = checkSignature(resp, c.publicKey);
      if (sig !== true) {
        failures.push(sig);
        continue;
      }
      responder = c;
      break;
    }
    if (!responder) {
      reasons.push({ code: 'signature', message: `${src}: ${failures[0] ?? 'signature does not verify'} with the key of "${candidates[0]!.subject}"` });
    } else if (!sameCert(responder, issuer) && !(responder.subjectDer.equals(issuer.subjectDer) && responder.publicKeyBits.equals(issuer.publicKeyBits))) {
      // A delegated signer (RFC 6960 §4.2.2.2): certified by the issuer itself for OCSP signing. An absent EKU
      // means "any purpose" for other checks but not here: the EKU must name id-kp-OCSPSigning.
      const who = `delegated responder "${responder.subject}"`;
      if (!responder.isIssuedBy(issuer)) {
        reasons.push({ code: 'responder', message: `${src}: ${who} is not issued by "${issuer.subject}"` });
      }
      if (!(responder.extKeyUsage ?? []).includes(EKU.ocspSigning)) {
        reasons.push({ code: 'responder', message: `${src}: ${who} lacks the OCSP signing extended key usage` });
      }
      if (!responder.validAt(at)) {
        reasons.push({
          code: 'responder',
          message: `${src}: ${who} is not valid at ${fmt(at)} (${fmt(responder.notBefore)} to ${fmt(responder.notAfter)})`,
        });
      }
    }
  }

  // Which certificate it is about: the issuer we were given must really be this certificate's issuer, else a
  // response signed by an impostor with the same name would match an impostor's CertID.
  let single: OcspSingleResponse | null = null;
  if (!cert.isIssuedBy(issuer)) {
    reasons.push({ code: 'certId', message: `${src}: certificate ${cert.serial} is not issued by "${issuer.subject}"` });
  } else {
    const wanted = [certIdFor(cert, issuer, 'sha1'), certIdFor(cert, issuer, 'sha256')];
    single = wanted.map((id) => resp.find(id)).find((s) => s !== null) ?? null;
    if (!single) {
      const sameSerial = resp.responses.find((r) => r.certId.serial === cert.serial);
      const message = sameSerial
        ? ['sha1', 'sha256'].includes(sameSerial.certId.hashAlgorithm)
          ? `names serial ${cert.serial} but another issuer than "${issuer.subject}"`
          : `names serial ${cert.serial} with a ${sameSerial.certId.hashAlgorithm} CertID; only SHA-1 and SHA-256 are accepted`
        : `is about ${resp.responses.map((r) => describeCertId(r.certId)).join(', ')}, not serial ${cert.serial}`;
      reasons.push({ code: 'certId', message: `${src}: response ${message}` });
    }
  }

  if (single) {
    if (requireGood && single.status !== 'good') {
      const detail =
        single.status === 'revoked'
          ? `revoked since ${fmt(single.revokedAt!)} (${single.revocationReason ?? 'unspecified'})`
          : 'unknown to the responder';
      reasons.push({ code: 'status', message: `${src}: certificate ${cert.serial} is ${detail}` });
    }
    const now = at.getTime();
    if (single.thisUpdate.getTime() > now + skew) {
      reasons.push({ code: 'freshness', message: `${src}: not yet valid: thisUpdate ${fmt(single.thisUpdate)} is after ${fmt(at)}` });
    }
    if (single.nextUpdate && single.nextUpdate.getTime() < now - skew) {
      reasons.push({ code: 'freshness', message: `${src}: expired: nextUpdate ${fmt(single.nextUpdate)} is before ${fmt(at)}` });
    }
    if (!single.nextUpdate && now - single.thisUpdate.getTime() > maxAge + skew) {
      reasons.push({
        code: 'freshness',
        message: `${src}: expired: no nextUpdate, and thisUpdate ${fmt(single.thisUpdate)} is more than ${Math.round(maxAge / 1000)}s before ${fmt(at)}`,
      });
    }
  }

  if (options.nonce) {
    if (!resp.nonce) reasons.push({ code: 'nonce', message: `${src}: the response carries no nonce; ours was ${Buffer.from(options.nonce).toString('hex')}` });
    else if (!resp.nonce.equals(Buffer.from(options.nonce))) reasons.push({ code: 'nonce', message: `${src}: the response nonce does not match ours` });
  }

  if (reasons.length > 0 || !single || !responder) {
    return {
      ok: false,
      reasons,
      ...(single ? { status: single.status, single, thisUpdate: single.thisUpdate, nextUpdate: single.nextUpdate } : {}),
    };
  }
  return { ok: true, status: single.status, single, thisUpdate: single.thisUpdate, nextUpdate: single.nextUpdate, responder };
}

/** True when the staple may be served: verifyOcspResponse with status good required. */
export function isValidStaple(staple: OcspResponse | Uint8Array, options: Omit<OcspVerifyOptions, 'requireGood'>): boolean {
  return verifyOcspResponse(staple, { ...options, requireGood: true }).ok;
}
