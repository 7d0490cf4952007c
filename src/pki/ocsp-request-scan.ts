import * as asn1js from 'asn1js';
import { ErrorCodes, MeshError } from '../core/index.js';
import { children, parseDer, rawBytes } from './der.js';
import { ocspHashFromOid, type OcspHashAlgorithm } from './ocsp-request.js';
import { serialFromBytes } from './serial.js';

/**
 * One CertID of a request, read straight from the request bytes. `der` is the CertID exactly as the client sent
 * it: a responder caches by it, since equal bytes ask the same question.
 */
export interface ScannedCertId {
  der: Buffer;
  /** The hash name, or null for a hash we do not compute (the responder cannot match the issuer then). */
  hash: OcspHashAlgorithm | null;
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  /** Canonical hex serial. */
  serial: string;
}

export interface ScannedOcspRequest {
  certIds: ScannedCertId[];
  /** True when the request carries extensions (a nonce, usually); RFC 5019 responders may ignore them. */
  hasExtensions: boolean;
  /** True when the request carries an optionalSignature (not required, not checked). */
  signed: boolean;
}

/** A responder answers requests for one certificate; a few more are allowed, a list of thousands is an attack. */
export const MAX_SCANNED_CERT_IDS = 64;

type Tagged = asn1js.AsnType & { idBlock: { tagClass: number; tagNumber: number } };

function fail(why: string): never {
  throw new MeshError(ErrorCodes.OCSP_PARSE, `OCSP request: ${why}`, { subject: 'OCSP request' });
}

function isContext(el: asn1js.AsnType | undefined, tag: number): boolean {
  const id = (el as Tagged | undefined)?.idBlock;
  return id !== undefined && id.tagClass === 3 && id.tagNumber === tag;
}

function scanCertId(el: asn1js.AsnType): ScannedCertId {
  const [alg, name, key, serial, ...rest] = children(el);
  const oid = alg ? children(alg)[0] : undefined;
  if (
    !(el instanceof asn1js.Sequence) ||
    rest.length > 0 ||
    !(oid instanceof asn1js.ObjectIdentifier) ||
    !(name instanceof asn1js.OctetString) ||
    !(key instanceof asn1js.OctetString) ||
    !(serial instanceof asn1js.Integer)
  ) {
    fail('a CertID is not { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }');
  }
  const serialBytes = serial.valueBlock.valueHexView;
  if (serialBytes.length === 0) fail('empty serial number');
  return {
    // A copy: the cached result must not alias a request buffer the caller may reuse.
    der: Buffer.from(rawBytes(el)),
    hash: ocspHashFromOid(oid.valueBlock.toString()) as OcspHashAlgorithm | null,
    issuerNameHash: Buffer.from(name.valueBlock.valueHexView),
    issuerKeyHash: Buffer.from(key.valueBlock.valueHexView),
    serial: serialFromBytes(serialBytes),
  };
}

function scanUncached(buf: Buffer): ScannedOcspRequest {
  try {
    return scanStructure(buf);
  } catch (err) {
    // asn1js throws plain Errors on some malformed contents (an OID it cannot render): still the caller's fault.
    if (err instanceof MeshError) throw err;
    fail(`malformed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function scanStructure(buf: Buffer): ScannedOcspRequest {
  const top = parseDer(buf, 'OCSP request', ErrorCodes.OCSP_PARSE);
  const [tbs, sig, ...extra] = children(top);
  if (!(top instanceof asn1js.Sequence) || !(tbs instanceof asn1js.Sequence) || extra.length > 0) fail('not an OCSPRequest { tbsRequest, optionalSignature }');
  if (sig !== undefined && !isContext(sig, 0)) fail('unexpected data after TBSRequest');
  let parts = children(tbs);
  // version [0] and requestorName [1], both optional and both ignored.
  if (isContext(parts[0], 0)) parts = parts.slice(1);
  if (isContext(parts[0], 1)) parts = parts.slice(1);
  const [list, ext, ...more] = parts;
  if (!(list instanceof asn1js.Sequence) || more.length > 0 || (ext !== undefined && !isContext(ext, 2))) fail('not a TBSRequest { requestList, extensions }');
  const requests = children(list);
  if (requests.length === 0) fail('names no certificate');
  if (requests.length > MAX_SCANNED_CERT_IDS) fail(`more than ${MAX_SCANNED_CERT_IDS} certificates in one request`);
  const certIds = requests.map((req) => {
    const [certId, single, ...r] = children(req);
    if (!(req instanceof asn1js.Sequence) || !certId || r.length > 0 || (single !== undefined && !isContext(single, 0))) fail('a Request is not { reqCert, singleRequestExtensions }');
    return scanCertId(certId);
  });
  return { certIds, hasExtensions: ext !== undefined, signed: sig !== undefined };
}

/**
 * Recent requests by their exact bytes: RFC 5019 clients (and every GET) send the same bytes for the same question,
 * so the responder's hot path is one Map lookup; only a new request (or one with a fresh nonce) is parsed.
 */
const recent = new Map<string, ScannedOcspRequest>();
const RECENT_MAX = 4096;

/**
 * Reads the CertIDs of a DER OCSPRequest (RFC 6960 §4.1.1) with asn1js, checking the structure it reads and that
 * nothing trails it; throws MeshError OCSP_PARSE otherwise. Answers for repeated request bytes come from a bounded
 * cache (results are immutable: callers must not modify them).
 */
export function scanOcspRequest(data: Uint8Array): ScannedOcspRequest {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length > 4096) return scanUncached(buf);
  const key = buf.toString('latin1');
  const hit = recent.get(key);
  if (hit) return hit;
  const scanned = scanUncached(buf);
  if (recent.size >= RECENT_MAX) recent.delete(recent.keys().next().value as string);
  recent.set(key, scanned);
  return scanned;
}
