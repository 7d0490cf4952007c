import { createHash, randomBytes } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';
import type { Certificate } from './certificate.js';
import { parseDer, toArrayBuffer } from './der.js';
import { OID } from './oids.js';
import { normalizeSerial, serialFromBytes, serialToDerHex } from './serial.js';

/** Hash algorithms a CertID may use. SHA-1 is what OpenSSL, curl and RFC 5019 clients send; SHA-256 on request. */
export const OCSP_HASH_ALGORITHMS = ['sha1', 'sha256', 'sha384', 'sha512'] as const;
export type OcspHashAlgorithm = (typeof OCSP_HASH_ALGORITHMS)[number];

const HASH_OIDS: Record<OcspHashAlgorithm, string> = {
  sha1: OID.sha1,
  sha256: OID.sha256,
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
};

/** The hash name for an OID, or null for hashes we do not compute. */
export function ocspHashFromOid(oid: string): OcspHashAlgorithm | null {
  const hit = (Object.entries(HASH_OIDS) as Array<[OcspHashAlgorithm, string]>).find(([, v]) => v === oid);
  return hit ? hit[0] : null;
}

export function ocspHashOid(hash: OcspHashAlgorithm): string {
  return HASH_OIDS[hash];
}

/**
 * An OCSP CertID (RFC 6960 §4.1.1): which certificate a request or single response is about. The issuer is named by
 * hashes, so a CertID can only be matched, not read back into a name.
 */
export interface CertId {
  /** The hash name, or the dotted OID when it is not one of OCSP_HASH_ALGORITHMS. */
  hashAlgorithm: OcspHashAlgorithm | string;
  /** Hash of the issuer's subject Name DER. */
  issuerNameHash: Buffer;
  /** Hash of the issuer's subjectPublicKey BIT STRING contents. */
  issuerKeyHash: Buffer;
  /** Canonical hex serial. */
  serial: string;
}

function hashWith(hash: OcspHashAlgorithm, data: Uint8Array): Buffer {
  return createHash(hash).update(data).digest();
}

/** The CertID of a serial issued by `issuer`: what a responder that knows only the serial (the ledger) computes. */
export function certIdForSerial(serial: string, issuer: Certificate, hash: OcspHashAlgorithm = 'sha1'): CertId {
  if (!(hash in HASH_OIDS)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `CertID hash "${hash}" is not supported; use one of ${OCSP_HASH_ALGORITHMS.join(', ')}`, {
      subject: 'hash',
    });
  }
  return {
    hashAlgorithm: hash,
    issuerNameHash: hashWith(hash, issuer.subjectDer),
    issuerKeyHash: hashWith(hash, issuer.publicKeyBits),
    serial: normalizeSerial(serial),
  };
}

/** The CertID naming `cert` as issued by `issuer` (whose subject and key are hashed, as RFC 6960 requires). */
export function certIdFor(cert: Certificate, issuer: Certificate, hash: OcspHashAlgorithm = 'sha1'): CertId {
  return certIdForSerial(cert.serial, issuer, hash);
}

/** True when the CertID's issuer hashes are `issuerCert`'s, computed with the CertID's own hash algorithm. */
export function matchesIssuer(certId: CertId, issuerCert: Certificate): boolean {
  const hash = certId.hashAlgorithm as OcspHashAlgorithm;
  if (!(hash in HASH_OIDS)) return false;
  return certId.issuerNameHash.equals(hashWith(hash, issuerCert.subjectDer)) && certId.issuerKeyHash.equals(hashWith(hash, issuerCert.publicKeyBits));
}

/** Same hash algorithm, issuer hashes and serial. */
export function certIdEquals(a: CertId, b: CertId): boolean {
  return (
    a.hashAlgorithm === b.hashAlgorithm &&
    normalizeSerial(a.serial) === normalizeSerial(b.serial) &&
    a.issuerNameHash.equals(b.issuerNameHash) &&
    a.issuerKeyHash.equals(b.issuerKeyHash)
  );
}

/** A short text for messages: "serial 1f… (sha1)". */
export function describeCertId(certId: CertId): string {
  return `serial ${certId.serial} (${certId.hashAlgorithm} CertID)`;
}

/** The pkijs CertID, with NULL hash parameters as OpenSSL writes them. */
export function toPkijsCertId(certId: CertId): pkijs.CertID {
  const oid = HASH_OIDS[certId.hashAlgorithm as OcspHashAlgorithm] ?? certId.hashAlgorithm;
  if (!/^\d+(\.\d+)+$/.test(oid)) {
    throw new MeshError(ErrorCodes.OCSP_BUILD, `CertID hash "${certId.hashAlgorithm}" is neither a known hash nor an OID`, { subject: 'certId' });
  }
  return new pkijs.CertID({
    hashAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: oid, algorithmParams: new asn1js.Null() }),
    issuerNameHash: new asn1js.OctetString({ valueHex: toArrayBuffer(certId.issuerNameHash) }),
    issuerKeyHash: new asn1js.OctetString({ valueHex: toArrayBuffer(certId.issuerKeyHash) }),
    serialNumber: new asn1js.Integer({ valueHex: toArrayBuffer(Buffer.from(serialToDerHex(certId.serial), 'hex')) }),
  });
}

export function fromPkijsCertId(id: pkijs.CertID): CertId {
  const oid = id.hashAlgorithm.algorithmId;
  return {
    hashAlgorithm: ocspHashFromOid(oid) ?? oid,
    issuerNameHash: Buffer.from(id.issuerNameHash.valueBlock.valueHexView),
    issuerKeyHash: Buffer.from(id.issuerKeyHash.valueBlock.valueHexView),
    serial: serialFromBytes(id.serialNumber.valueBlock.valueHexView),
  };
}

/** A random 16-byte nonce, the size OpenSSL sends; RFC 8954 allows 1 to 32 bytes. */
export function randomNonce(size = 16): Buffer {
  return randomBytes(size);
}

/** The id-pkix-ocsp-nonce extension: extnValue is the DER of `Nonce ::= OCTET STRING` (RFC 6960 §4.4.1, RFC 8954). */
export function nonceExtension(nonce: Uint8Array): pkijs.Extension {
  if (nonce.length < 1 || nonce.length > 32) {
    throw new MeshError(ErrorCodes.OCSP_BUILD, `OCSP nonce of ${nonce.length} bytes; RFC 8954 requires 1 to 32`, { subject: 'nonce' });
  }
  return new pkijs.Extension({
    extnID: OID.ocspNonce,
    critical: false,
    extnValue: new asn1js.OctetString({ valueHex: toArrayBuffer(nonce) }).toBER(),
  });
}

/**
 * The nonce value from an extension. Nonces are OCTET STRINGs inside extnValue; some old clients put the raw bytes
 * there instead, so anything that is not exactly one OCTET STRING is taken as the nonce itself.
 */
export function nonceFromExtensions(extensions: pkijs.Extension[] | undefined): Buffer | null {
  const ext = extensions?.find((e) => e.extnID === OID.ocspNonce);
  if (!ext) return null;
  const raw = ext.extnValue.valueBlock.valueHexView;
  const inner = asn1js.fromBER(raw);
  if (inner.offset === raw.byteLength && inner.result instanceof asn1js.OctetString && !inner.result.idBlock.isConstructed) {
    return Buffer.from(inner.result.valueBlock.valueHexView);
  }
  return Buffer.from(raw);
}

export interface BuildOcspRequestOptions {
  certIds: CertId[];
  /** Adds the nonce extension (1–32 bytes; see randomNonce). Omitted by default, as for cacheable GET requests. */
  nonce?: Uint8Array;
}

/** An unsigned OCSPRequest (RFC 6960 §4.1) for one or more certificates, as DER. */
export function buildOcspRequest(options: BuildOcspRequestOptions): Buffer {
  if (options.certIds.length === 0) {
    throw new MeshError(ErrorCodes.OCSP_BUILD, 'OCSP request: at least one CertID is required', { subject: 'certIds' });
  }
  const tbs = new pkijs.TBSRequest({
    requestList: options.certIds.map((id) => new pkijs.Request({ reqCert: toPkijsCertId(id) })),
    ...(options.nonce ? { requestExtensions: [nonceExtension(options.nonce)] } : {}),
  });
  try {
    // encodeFlag true: build from the fields (pkijs otherwise re-emits the bytes it parsed, here none).
    const req = new asn1js.Sequence({ value: [tbs.toSchema(true)] });
    return Buffer.from(req.toBER());
  } catch (err) {
    throw new MeshError(ErrorCodes.OCSP_BUILD, `cannot build OCSP request: ${describeError(err)}`, { cause: err });
  }
}

/** A parsed OCSP request: what a responder needs to answer it. */
export class OcspRequest {
  readonly der: Buffer;
  readonly source: string;
  readonly certIds: readonly CertId[];
  /** The nonce to echo, or null. */
  readonly nonce: Buffer | null;
  /** True when the request carries an optionalSignature (we do not require or check it). */
  readonly signed: boolean;

  private constructor(der: Buffer, source: string) {
    this.der = der;
    this.source = source;
    const root = parseDer(der, source, ErrorCodes.OCSP_PARSE);
    let req: pkijs.OCSPRequest;
    try {
      req = new pkijs.OCSPRequest({ schema: root });
    } catch (err) {
      throw new MeshError(ErrorCodes.OCSP_PARSE, `${source}: not an OCSP request: ${describeError(err)}`, { subject: source, cause: err });
    }
    if (req.tbsRequest.requestList.length === 0) {
      throw new MeshError(ErrorCodes.OCSP_PARSE, `${source}: OCSP request names no certificate`, { subject: source });
    }
    this.certIds = req.tbsRequest.requestList.map((r) => fromPkijsCertId(r.reqCert));
    this.nonce = nonceFromExtensions(req.tbsRequest.requestExtensions);
    this.signed = req.optionalSignature !== undefined;
  }

  /** From DER (POST body, or the base64-decoded GET path). */
  static parse(der: Uint8Array, source = 'OCSP request'): OcspRequest {
    return new OcspRequest(Buffer.from(der), source);
  }
}
