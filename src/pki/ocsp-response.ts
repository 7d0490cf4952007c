import { createHash, sign as nodeSign } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { ErrorCodes, MeshError, describeError, wholeSeconds } from '../core/index.js';
import { Certificate } from './certificate.js';
import { revocationReasonCode, revocationReasonFromCode, type RevocationReason } from './crl.js';
import { children, parseDer, rawBytes, toArrayBuffer } from './der.js';
import { keysMatch, type SigningKey } from './keys.js';
import {
  certIdEquals,
  fromPkijsCertId,
  matchesIssuer,
  nonceExtension,
  nonceFromExtensions,
  toPkijsCertId,
  type CertId,
} from './ocsp-request.js';
import { OID } from './oids.js';

/** OCSPResponseStatus (RFC 6960 §4.2.1); 4 is unused. */
export const OCSP_RESPONSE_STATUSES = {
  successful: 0,
  malformedRequest: 1,
  internalError: 2,
  tryLater: 3,
  sigRequired: 5,
  unauthorized: 6,
} as const;
export type OcspResponseStatus = keyof typeof OCSP_RESPONSE_STATUSES;
export type OcspErrorStatus = Exclude<OcspResponseStatus, 'successful'>;

export type OcspCertStatusSpec = 'good' | 'unknown' | { revoked: { at: Date; reason?: RevocationReason } };

export interface OcspSingleResponseSpec {
  /** The CertID as the request sent it: the answer repeats its hash algorithm, as clients match on it. */
  certId: CertId;
  status: OcspCertStatusSpec;
  thisUpdate: Date;
  /** Strongly advised: RFC 5019 requires it, and Envoy treats a response without it as expired. */
  nextUpdate?: Date;
}

export interface OcspResponder {
  /** The CA itself, or a delegated signer issued by it with the OCSP-signing EKU. */
  cert: Certificate;
  signer: SigningKey;
}

export interface BuildOcspResponseOptions {
  responder: OcspResponder;
  responses: OcspSingleResponseSpec[];
  producedAt: Date;
  /** The request's nonce, echoed in the response extensions. */
  nonce?: Uint8Array;
  /**
   * Include the responder certificate. Default: only for a delegated signer, which clients cannot find otherwise;
   * the CA itself is already known to them.
   */
  includeCertificates?: boolean;
}

const BASIC_OCSP = OID.ocspBasic;

function generalizedTime(date: Date): asn1js.GeneralizedTime {
  return new asn1js.GeneralizedTime({ valueDate: wholeSeconds(date) });
}

function certStatusElement(status: OcspCertStatusSpec, i: number): asn1js.BaseBlock {
  if (status === 'good') return new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 } });
  if (status === 'unknown') return new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 2 } });
  const { at, reason } = status.revoked ?? {};
  if (!(at instanceof Date) || Number.isNaN(at.getTime())) {
    throw new MeshError(ErrorCodes.OCSP_BUILD, `responses[${i}]: revoked status needs a valid "at" date`, { subject: `responses[${i}].status` });
  }
  // RevokedInfo ::= SEQUENCE { revocationTime GeneralizedTime, revocationReason [0] EXPLICIT CRLReason OPTIONAL },
  // written as [1] IMPLICIT; 'unspecified' is left out as for CRL entries (RFC 5280 §5.3.1, CA/B BR §7.3).
  const value: asn1js.BaseBlock[] = [generalizedTime(at)];
  if (reason !== undefined && reason !== 'unspecified') {
    const code = revocationReasonCode(reason);
    if (code === undefined) {
      throw new MeshError(ErrorCodes.OCSP_BUILD, `responses[${i}]: "${reason}" is not a revocation reason`, { subject: `responses[${i}].status` });
    }
    value.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.Enumerated({ value: code })] }));
  }
  return new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 1 }, value });
}

/** The AlgorithmIdentifier of the signer's scheme: RSA PKCS#1 with NULL parameters, ECDSA and Ed25519 without. */
function signatureAlgorithm(signer: SigningKey): pkijs.AlgorithmIdentifier {
  return new pkijs.AlgorithmIdentifier({
    algorithmId: signer.scheme.oid,
    ...(signer.scheme.webcrypto.name === 'RSASSA-PKCS1-v1_5' ? { algorithmParams: new asn1js.Null() } : {}),
  });
}

function pkijsCertificate(cert: Certificate): pkijs.Certificate {
  return pkijs.Certificate.fromBER(cert.der);
}

/**
 * Builds a successful OCSPResponse carrying a BasicOCSPResponse (RFC 6960 §4.2), signed by `responder` with
 * node:crypto on its KeyObject (the responder signs per request; WebCrypto would cost ~3× more). The responder is
 * identified by key hash, as RFC 5019 recommends; every time is rounded to whole seconds for OpenSSL's sake.
 */
export async function buildOcspResponse(options: BuildOcspResponseOptions): Promise<Buffer> {
  const { responder, responses } = options;
  if (responses.length === 0) {
    throw new MeshError(ErrorCodes.OCSP_BUILD, 'OCSP response: at least one single response is required', { subject: 'responses' });
  }
  if (!keysMatch(responder.signer.privateKey, responder.cert.publicKey)) {
    throw new MeshError(ErrorCodes.OCSP_BUILD, `OCSP response: the signing key does not belong to responder "${responder.cert.subject}"`, {
      subject: 'responder',
    });
  }
  const singles = responses.map((r, i) => {
    if (!(r.thisUpdate instanceof Date) || Number.isNaN(r.thisUpdate.getTime())) {
      throw new MeshError(ErrorCodes.OCSP_BUILD, `responses[${i}]: thisUpdate is not a valid date`, { subject: `responses[${i}].thisUpdate` });
    }
    if (r.nextUpdate !== undefined && !(r.nextUpdate.getTime() >= r.thisUpdate.getTime())) {
      throw new MeshError(ErrorCodes.OCSP_BUILD, `responses[${i}]: nextUpdate ${String(r.nextUpdate)} is before thisUpdate`, {
        subject: `responses[${i}].nextUpdate`,
      });
    }
    return new pkijs.SingleResponse({
      certID: toPkijsCertId(r.certId),
      certStatus: certStatusElement(r.status, i),
      thisUpdate: wholeSeconds(r.thisUpdate),
      ...(r.nextUpdate !== undefined ? { nextUpdate: wholeSeconds(r.nextUpdate) } : {}),
    });
  });
  const delegated = !responses.every((r) => matchesIssuer(r.certId, responder.cert));
  const include = options.includeCertificates ?? delegated;
  try {
    const data = new pkijs.ResponseData({
      // byKey: KeyHash ::= OCTET STRING, the SHA-1 of the responder's subjectPublicKey bits (RFC 6960 §4.2.1).
      responderID: new asn1js.OctetString({ valueHex: toArrayBuffer(createHash('sha1').update(responder.cert.publicKeyBits).digest()) }),
      producedAt: wholeSeconds(options.producedAt),
      responses: singles,
      ...(options.nonce ? { responseExtensions: [nonceExtension(options.nonce)] } : {}),
    });
    const tbs = Buffer.from(data.toSchema(true).toBER());
    data.tbsView = new Uint8Array(tbs);
    const signature = nodeSign(responder.signer.scheme.digest, tbs, { key: responder.signer.privateKey, dsaEncoding: 'der' });
    const basic = new pkijs.BasicOCSPResponse({
      tbsResponseData: data,
      signatureAlgorithm: signatureAlgorithm(responder.signer),
      signature: new asn1js.BitString({ valueHex: toArrayBuffer(signature) }),
      ...(include ? { certs: [pkijsCertificate(responder.cert)] } : {}),
    });
    const resp = new pkijs.OCSPResponse({
      responseStatus: new asn1js.Enumerated({ value: OCSP_RESPONSE_STATUSES.successful }),
      responseBytes: new pkijs.ResponseBytes({
        responseType: BASIC_OCSP,
        response: new asn1js.OctetString({ valueHex: basic.toSchema().toBER() }),
      }),
    });
    return Buffer.from(resp.toSchema().toBER());
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError(ErrorCodes.OCSP_BUILD, `cannot build OCSP response: ${describeError(err)}`, { cause: err });
  }
}

/** An unsigned error response: only the status, as RFC 6960 §2.3 prescribes for these. */
export function buildOcspErrorResponse(status: OcspErrorStatus): Buffer {
  const value = OCSP_RESPONSE_STATUSES[status];
  if (value === undefined || status === ('successful' as string)) {
    throw new MeshError(ErrorCodes.OCSP_BUILD, `"${status}" is not an OCSP error status; use one of malformedRequest, internalError, tryLater, sigRequired, unauthorized`, {
      subject: 'status',
    });
  }
  return Buffer.from(new asn1js.Sequence({ value: [new asn1js.Enumerated({ value })] }).toBER());
}

export type OcspResponderId = { type: 'name'; name: string; der: Buffer } | { type: 'keyHash'; keyHash: Buffer };

export interface OcspSingleResponse {
  certId: CertId;
  status: 'good' | 'revoked' | 'unknown';
  /** Set when revoked. */
  revokedAt: Date | null;
  /** Set when revoked: the reason code, or 'unspecified' when the response gives none. */
  revocationReason: RevocationReason | null;
  thisUpdate: Date;
  nextUpdate: Date | null;
}

function statusName(code: number): OcspResponseStatus | null {
  const hit = (Object.entries(OCSP_RESPONSE_STATUSES) as Array<[OcspResponseStatus, number]>).find(([, v]) => v === code);
  return hit ? hit[0] : null;
}

type Tagged = { idBlock: { tagClass: number; tagNumber: number; isConstructed: boolean } };

/**
 * A parsed OCSPResponse. Parsing checks structure only; ocsp-verify.ts decides whether to believe it. A
 * non-successful response has no signed part: producedAt and responderId are null, responses empty.
 */
export class OcspResponse {
  readonly der: Buffer;
  readonly source: string;
  readonly responseStatus: OcspResponseStatus;
  readonly producedAt: Date | null = null;
  readonly responderId: OcspResponderId | null = null;
  /** Certificates in the response (a delegated responder's certificate and maybe its chain). */
  readonly certificates: readonly Certificate[] = [];
  readonly responses: readonly OcspSingleResponse[] = [];
  readonly nonce: Buffer | null = null;
  /** The signed bytes: tbsResponseData exactly as encoded. */
  readonly tbsResponseData: Buffer | null = null;
  readonly signatureAlgorithmOid: string | null = null;
  /** DER of the signature AlgorithmIdentifier parameters, or null when absent. */
  readonly signatureAlgorithmParams: Buffer | null = null;
  readonly signature: Buffer | null = null;

  private constructor(der: Buffer, source: string) {
    this.der = der;
    this.source = source;
    const fail = (what: string, cause?: unknown): MeshError =>
      new MeshError(ErrorCodes.OCSP_PARSE, `${source}: ${what}`, { subject: source, ...(cause === undefined ? {} : { cause }) });
    const root = parseDer(der, source, ErrorCodes.OCSP_PARSE);
    let resp: pkijs.OCSPResponse;
    try {
      resp = new pkijs.OCSPResponse({ schema: root });
    } catch (err) {
      throw fail(`not an OCSP response: ${describeError(err)}`, err);
    }
    const code = resp.responseStatus.valueBlock.valueDec;
    const status = statusName(code);
    if (status === null) throw fail(`unknown OCSP response status ${code}`);
    this.responseStatus = status;
    if (status !== 'successful') return;
    if (!resp.responseBytes) throw fail('successful OCSP response without responseBytes');
    if (resp.responseBytes.responseType !== BASIC_OCSP) {
      throw fail(`unsupported OCSP response type ${resp.responseBytes.responseType} (only id-pkix-ocsp-basic)`);
    }
    const inner = parseDer(resp.responseBytes.response.valueBlock.valueHexView, `${source} (BasicOCSPResponse)`, ErrorCodes.OCSP_PARSE);
    let basic: pkijs.BasicOCSPResponse;
    try {
      basic = new pkijs.BasicOCSPResponse({ schema: inner });
    } catch (err) {
      throw fail(`malformed BasicOCSPResponse: ${describeError(err)}`, err);
    }
    const parts = children(inner);
    this.tbsResponseData = rawBytes(parts[0]!);
    const algParts = children(parts[1]!);
    this.signatureAlgorithmOid = basic.signatureAlgorithm.algorithmId;
    this.signatureAlgorithmParams = algParts[1] ? rawBytes(algParts[1]) : null;
    this.signature = Buffer.from(basic.signature.valueBlock.valueHexView);
    // certs [0] EXPLICIT SEQUENCE OF Certificate: read as encoded, not re-encoded by pkijs.
    const certsField = parts[3] ? children(parts[3])[0] : undefined;
    try {
      this.certificates = certsField
        ? children(certsField).map((c, i) => Certificate.fromDer(rawBytes(c), `${source} (certificate ${i + 1})`))
        : [];
    } catch (err) {
      // A broken embedded certificate makes the whole response unparsable, reported as such.
      throw fail(`malformed certificate in the response: ${describeError(err)}`, err);
    }
    const data = basic.tbsResponseData;
    if (data.responderID instanceof asn1js.OctetString) {
      this.responderId = { type: 'keyHash', keyHash: Buffer.from(data.responderID.valueBlock.valueHexView) };
    } else {
      const byName = children(parts[0]!).find((el) => {
        const id = (el as unknown as Tagged).idBlock;
        return id.tagClass === 3 && id.tagNumber === 1;
      });
      const nameDer = byName ? rawBytes(children(byName)[0]!) : Buffer.alloc(0);
      let name = '';
      try {
        name = new x509.Name(nameDer).toString();
      } catch {
        // A name @peculiar/x509 cannot render still matches by bytes; the text is for messages only.
      }
      this.responderId = { type: 'name', name, der: nameDer };
    }
    this.producedAt = data.producedAt;
    this.nonce = nonceFromExtensions(data.responseExtensions);
    this.responses = data.responses.map((r, i) => this.#single(r, i));
  }

  #single(r: pkijs.SingleResponse, i: number): OcspSingleResponse {
    const el = r.certStatus as Tagged & asn1js.BaseBlock;
    const base = { certId: fromPkijsCertId(r.certID), thisUpdate: r.thisUpdate, nextUpdate: r.nextUpdate ?? null };
    if (el.idBlock.tagClass === 3 && el.idBlock.tagNumber === 0) return { ...base, status: 'good', revokedAt: null, revocationReason: null };
    if (el.idBlock.tagClass === 3 && el.idBlock.tagNumber === 2) return { ...base, status: 'unknown', revokedAt: null, revocationReason: null };
    const info = children(el);
    const time = info[0];
    if (!(el.idBlock.tagClass === 3 && el.idBlock.tagNumber === 1) || !(time instanceof asn1js.GeneralizedTime)) {
      throw new MeshError(ErrorCodes.OCSP_PARSE, `${this.source}: response ${i + 1} has a malformed certStatus`, { subject: this.source });
    }
    let reason: RevocationReason = 'unspecified';
    const tagged = info[1] ? children(info[1])[0] : undefined;
    if (tagged instanceof asn1js.Enumerated) {
      const r2 = revocationReasonFromCode(tagged.valueBlock.valueDec);
      if (!r2) {
        throw new MeshError(ErrorCodes.OCSP_PARSE, `${this.source}: response ${i + 1} has an undefined revocation reason ${tagged.valueBlock.valueDec}`, {
          subject: this.source,
        });
      }
      reason = r2;
    }
    return { ...base, status: 'revoked', revokedAt: time.toDate(), revocationReason: reason };
  }

  /** From DER (a staple file, an HTTP body). */
  static parse(der: Uint8Array, source = 'OCSP response'): OcspResponse {
    return new OcspResponse(Buffer.from(der), source);
  }

  /** The single response for a CertID (same hash algorithm, issuer hashes and serial), or null. */
  find(certId: CertId): OcspSingleResponse | null {
    return this.responses.find((r) => certIdEquals(r.certId, certId)) ?? null;
  }
}
