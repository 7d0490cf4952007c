import { ECDH, createHash, createPublicKey, generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { isIPv4 } from 'node:net';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import { ErrorCodes, MeshError, describeError, wholeSeconds } from '../core/index.js';
import { keyIdentifier, specExtensions, type CertificateBuilder } from './certificate-builder.js';
import type { CertificateSpec, Issuer } from './certificate-spec.js';
import './crypto-provider.js';
import type { Csr } from './csr.js';
import { checkSan, type San } from './general-names.js';
import { describeKey, publicKeyOf, spkiDer, type SignatureScheme, type SigningKey } from './keys.js';
import { OID } from './oids.js';
import { serialToDerHex } from './serial.js';

/*
 * The fast path of issuance. @peculiar/x509's generator spends ~2 ms per certificate in pure-JS ASN.1 and garbage
 * collection; the signature itself costs ~25 µs. This builder writes the TBSCertificate as DER directly: fixed parts
 * (algorithm identifiers, the issuer name, extensions that depend only on the spec's constant fields) are DER made
 * once — by asn1js or by the generic builder's own extension encoder, so they are byte-identical by construction — and
 * the variable parts (serial, validity, subject, SANs, key identifiers, public key) are placed around them with
 * plain tag-length-value framing. Nothing here parses DER on the hot path (asn1js reads a key only when it arrives
 * in an unusual encoding, e.g. a compressed EC point).
 */

// ---- DER framing ----

const SEQUENCE = 0x30;
const SET = 0x31;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;
const UTF8_STRING = 0x0c;
const PRINTABLE_STRING = 0x13;
const IA5_STRING = 0x16;
const EXTENSIONS_TAG = 0xa3; // [3] EXPLICIT in TBSCertificate
// GeneralName CHOICE tags, IMPLICIT context-specific primitives (RFC 5280 §4.2.1.6).
const GN_EMAIL = 0x81;
const GN_DNS = 0x82;
const GN_URI = 0x86;
const GN_IP = 0x87;

/** One TLV around `parts`, in a single allocation (the hot path builds ~30 of these per certificate). */
function tlv(tag: number, parts: readonly Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const head = len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : 5;
  const out = Buffer.allocUnsafe(head + len);
  out[0] = tag;
  if (head === 2) out[1] = len;
  else if (head === 3) {
    out[1] = 0x81;
    out[2] = len;
  } else if (head === 4) {
    out[1] = 0x82;
    out.writeUInt16BE(len, 2);
  } else {
    if (len >= 0x1000000) throw new MeshError(ErrorCodes.CERT_BUILD, `a DER element of ${len} bytes is too large for a certificate`);
    out[1] = 0x83;
    out.writeUIntBE(len, 2, 3);
  }
  let off = head;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function tlv1(tag: number, content: Uint8Array): Buffer {
  return tlv(tag, [content]);
}

// ---- constants made once with asn1js ----

const oidCache = new Map<string, Buffer>();
function oidDer(oid: string): Buffer {
  let der = oidCache.get(oid);
  if (!der) {
    der = Buffer.from(new asn1js.ObjectIdentifier({ value: oid }).toBER(false));
    oidCache.set(oid, der);
  }
  return der;
}

const VERSION_V3 = Buffer.from(
  new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.Integer({ value: 2 })] }).toBER(false),
);
const BOOLEAN_TRUE = Buffer.from(new asn1js.Boolean({ value: true }).toBER(false));
const NO_BYTES = Buffer.alloc(0);
const EMPTY_NAME = Buffer.from(new asn1js.Sequence({ value: [] }).toBER(false));
const ZERO_UNUSED_BITS = Buffer.from([0]);

const sigAlgCache = new Map<string, Buffer>();
/**
 * AlgorithmIdentifier of the CA's signature. RSA PKCS#1 v1.5 algorithms carry an explicit NULL parameter (RFC 4055
 * §5); ECDSA (RFC 5758 §3.2) and Ed25519 (RFC 8410 §3) carry none.
 */
function signatureAlgorithmDer(scheme: SignatureScheme): Buffer {
  let der = sigAlgCache.get(scheme.oid);
  if (!der) {
    const rsa = scheme.oid.startsWith('1.2.840.113549.1.1.');
    const value: asn1js.AsnType[] = [new asn1js.ObjectIdentifier({ value: scheme.oid })];
    if (rsa) value.push(new asn1js.Null());
    der = Buffer.from(new asn1js.Sequence({ value }).toBER(false));
    sigAlgCache.set(scheme.oid, der);
  }
  return der;
}

// ---- memoized extension DER, from the generic builder's own encoder ----

const MEMO_LIMIT = 4096;
const extensionMemo = new Map<string, Buffer>();
let dummyKeyObject: KeyObject | undefined;

/** A throwaway key: specExtensions always computes a subject key identifier, so it needs some public key. */
function dummyKey(): KeyObject {
  return (dummyKeyObject ??= generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey);
}

/**
 * The DER of one extension exactly as GenericCertificateBuilder writes it, for the spec fields in `partial`. Used
 * for extensions that are constant per CA or per profile (computed once, then served from the memo) and for rare
 * ones, so the two builders cannot drift apart on them.
 */
function genericExtension(key: string, oid: string, partial: Partial<CertificateSpec>, issuerKeyId = '00'): Buffer {
  let der = extensionMemo.get(key);
  if (der) return der;
  const spec: CertificateSpec = {
    serial: '1',
    subject: [],
    notBefore: new Date(0),
    notAfter: new Date(0),
    publicKey: dummyKey(),
    ...partial,
  };
  const ext = specExtensions(spec, issuerKeyId).find((e) => e.type === oid);
  if (!ext) throw new MeshError(ErrorCodes.INTERNAL, `the generic encoder wrote no extension ${oid} for ${key}`);
  der = Buffer.from(ext.rawData);
  // A plain size cap, not an LRU: keys are per CA / per profile, so the memo stays tiny in practice; the cap only
  // guards against a caller that makes every certificate with different constant fields.
  if (extensionMemo.size >= MEMO_LIMIT) extensionMemo.clear();
  extensionMemo.set(key, der);
  return der;
}

/** The SKI extension minus its 20-byte key id, cut from the generic encoder's output once. */
let skiPrefixDer: Buffer | undefined;
function skiExtension(ski: Buffer): Buffer {
  if (!skiPrefixDer) {
    const probe = Buffer.from(new x509.SubjectKeyIdentifierExtension('5a'.repeat(20), false).rawData);
    const generic = genericExtension('ski-probe', OID.subjectKeyIdentifier, {});
    // Sanity of the template: the key id is the last 20 bytes, and the generic builder writes the same framing.
    if (!probe.subarray(probe.length - 20).equals(Buffer.alloc(20, 0x5a)) || !generic.subarray(0, -20).equals(probe.subarray(0, -20))) {
      throw new MeshError(ErrorCodes.INTERNAL, 'unexpected subjectKeyIdentifier encoding; the DER template does not fit');
    }
    skiPrefixDer = probe.subarray(0, probe.length - 20);
  }
  return Buffer.concat([skiPrefixDer, ski], skiPrefixDer.length + ski.length);
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  // critical is DEFAULT FALSE: DER leaves it out when false.
  return tlv(SEQUENCE, [oidDer(oid), critical ? BOOLEAN_TRUE : NO_BYTES, tlv1(OCTET_STRING, value)]);
}

// ---- public keys ----

interface KeyInfo {
  spki: Buffer;
  /** SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1), as the generic builder computes it. */
  ski: Buffer;
}

/**
 * SPKI and key id per KeyObject (immutable, so the cache never goes stale). Exporting SPKI goes through OpenSSL 3.0's
 * encoder, ~115 µs here, several times the signature; JWK export would be fast but can deadlock Node 20 when garbage
 * collection frees the key's generation job during the export (seen here; the job's destructor takes the key's mutex).
 */
const keyInfo = new WeakMap<KeyObject, KeyInfo>();

const RSA_ALGORITHM = Buffer.from(
  new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.1.1' }), new asn1js.Null()] }).toBER(false),
);
/** subjectPublicKey lengths: uncompressed EC points (0x04 ‖ X ‖ Y) and raw Ed25519 keys. */
const RAW_KEY_BYTES: Record<string, number> = { prime256v1: 65, secp384r1: 97, secp521r1: 133, ed25519: 32 };
/** Canonical SPKI prefix (everything before the key bits) per curve, taken from one export of a fresh key. */
const spkiPrefixes = new Map<string, Buffer>();

function curveOf(key: KeyObject): string | undefined {
  const type = key.asymmetricKeyType;
  if (type === 'ed25519') return 'ed25519';
  if (type === 'ec') return key.asymmetricKeyDetails?.namedCurve;
  return undefined;
}

function canonicalPrefix(curve: string): Buffer {
  let prefix = spkiPrefixes.get(curve);
  if (!prefix) {
    const pair = curve === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: curve });
    const der = pair.publicKey.export({ format: 'der', type: 'spki' });
    prefix = der.subarray(0, der.length - RAW_KEY_BYTES[curve]!);
    spkiPrefixes.set(curve, prefix);
  }
  return prefix;
}

/** The key bits of an SPKI in Node's canonical form for `curve`, or null when `spki` is in another form. */
function canonicalKeyBits(curve: string | undefined, spki: Uint8Array): Buffer | null {
  const n = curve ? RAW_KEY_BYTES[curve] : undefined;
  if (!curve || !n) return null;
  const prefix = canonicalPrefix(curve);
  if (spki.length !== prefix.length + n) return null;
  const bits = Buffer.from(spki.buffer, spki.byteOffset + prefix.length, n);
  if (curve !== 'ed25519' && bits[0] !== 0x04) return null;
  return Buffer.from(spki.buffer, spki.byteOffset, prefix.length).equals(prefix) ? bits : null;
}

/**
 * A key that came with a compressed (or hybrid) EC point keeps that form through Node's export. Certificates carry
 * the uncompressed form, which every verifier must support (RFC 5480 §2.2), as the generic builder's WebCrypto
 * export writes too; the key id is then taken over the bits actually certified (the generic builder hashes the
 * compressed form, which OpenSSL would not reproduce from its certificate).
 */
function uncompressedEcKey(curve: string | undefined, spki: Buffer): KeyInfo | null {
  if (!curve || curve === 'ed25519' || !RAW_KEY_BYTES[curve]) return null;
  const parsed = asn1js.fromBER(new Uint8Array(spki.buffer, spki.byteOffset, spki.byteLength));
  const bitString = (parsed.result as asn1js.Sequence).valueBlock?.value?.[1];
  if (parsed.offset === -1 || !(bitString instanceof asn1js.BitString)) return null;
  const point = Buffer.from(bitString.valueBlock.valueHexView);
  if (point[0] === 0x04) return null;
  const uncompressed = ECDH.convertKey(point, curve, undefined, undefined, 'uncompressed') as Buffer;
  const prefix = canonicalPrefix(curve);
  return { spki: Buffer.concat([prefix, uncompressed]), ski: sha1(uncompressed) };
}

function sha1(data: Uint8Array): Buffer {
  return createHash('sha1').update(data).digest();
}

function keyInfoOf(key: KeyObject): KeyInfo {
  let info = keyInfo.get(key);
  if (info) return info;
  describeKey(key, 'public key'); // the same KEY_TYPE error as the generic builder for keys we do not certify
  const pub = publicKeyOf(key);
  if (pub.asymmetricKeyType === 'rsa') {
    // PKCS#1 export does not go through the slow encoder; the SPKI around it is fixed (rsaEncryption, NULL).
    const pkcs1 = pub.export({ format: 'der', type: 'pkcs1' });
    info = { spki: tlv(SEQUENCE, [RSA_ALGORITHM, tlv(BIT_STRING, [ZERO_UNUSED_BITS, pkcs1])]), ski: sha1(pkcs1) };
  } else {
    const spki = spkiDer(pub);
    const curve = curveOf(pub);
    const bits = canonicalKeyBits(curve, spki);
    info = bits ? { spki, ski: sha1(bits) } : (uncompressedEcKey(curve, spki) ?? { spki, ski: Buffer.from(keyIdentifier(spki), 'hex') });
  }
  keyInfo.set(key, info);
  return info;
}

/**
 * Makes a public key from SPKI DER and remembers that DER for the builder, so that certifying the key later skips
 * the slow export. The DER is remembered only in Node's canonical form, so the certificate holds exactly the bytes
 * an export would give (and the generic builder would write).
 */
export function importPublicKey(spki: Uint8Array): KeyObject {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  remember(key, spki);
  return key;
}

/**
 * Lets the builder reuse a CSR's SPKI bytes for the CSR's own public key (Csr makes `publicKey` from exactly those
 * bytes). Call it on the CSR path before building; without it the builder exports the key itself, ~115 µs.
 */
export function rememberCsrPublicKey(csr: Csr): void {
  remember(csr.publicKey, csr.spkiDer);
}

function remember(key: KeyObject, spki: Uint8Array): void {
  if (keyInfo.has(key) || key.asymmetricKeyType === 'rsa') return; // RSA is fast anyway (PKCS#1 export)
  const bits = canonicalKeyBits(curveOf(key), spki);
  if (bits) keyInfo.set(key, { spki: Buffer.from(spki), ski: sha1(bits) });
}

// ---- names ----

/** The attribute names @peculiar/x509 knows, hence the generic builder accepts; anything else takes the generic path. */
const ATTRIBUTE_OIDS = new Map<string, string>([
  ['CN', '2.5.4.3'],
  ['L', '2.5.4.7'],
  ['ST', '2.5.4.8'],
  ['O', '2.5.4.10'],
  ['OU', '2.5.4.11'],
  ['C', '2.5.4.6'],
  ['DC', '0.9.2342.19200300.100.1.25'],
  ['E', '1.2.840.113549.1.9.1'],
  ['G', '2.5.4.42'],
  ['I', '2.5.4.43'],
  ['SN', '2.5.4.4'],
  ['T', '2.5.4.12'],
]);
/** emailAddress and domainComponent are IA5String; everything else PrintableString when it fits, else UTF8String. */
const IA5_ATTRIBUTES = new Set(['0.9.2342.19200300.100.1.25', '1.2.840.113549.1.9.1']);
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const ASCII = /^[\x00-\x7f]*$/;
const DOTTED_OID = /^[0-2](?:\.(?:0|[1-9][0-9]*))+$/;

/** One AttributeTypeAndValue as @peculiar/x509 writes it, or null for what only the generic path handles. */
function attributeDer(pair: unknown): Buffer | null {
  if (!Array.isArray(pair) || pair.length !== 2) return null;
  const [type, value] = pair as [unknown, unknown];
  if (typeof type !== 'string' || typeof value !== 'string') return null;
  // @peculiar/x509 takes a type with a digit or dot as an OID verbatim, else looks the name up.
  const oid = /[\d.]/.test(type) ? (DOTTED_OID.test(type) ? type : undefined) : ATTRIBUTE_OIDS.get(type);
  // '#…' is hex DER, and quotes and backslashes are unescaped by @peculiar/x509 even in pairs: leave those to it.
  if (!oid || value.startsWith('#') || value.includes('"') || value.includes('\\')) return null;
  let str: Buffer;
  if (IA5_ATTRIBUTES.has(oid)) {
    if (!ASCII.test(value)) return null;
    str = tlv1(IA5_STRING, Buffer.from(value, 'latin1'));
  } else if (PRINTABLE.test(value)) {
    str = tlv1(PRINTABLE_STRING, Buffer.from(value, 'latin1'));
  } else {
    str = tlv1(UTF8_STRING, Buffer.from(value, 'utf8'));
  }
  return tlv(SEQUENCE, [oidDer(oid), str]);
}

const nameMemo = new Map<string, Buffer>();

/** Subjects the fast path does not model (RFC 4514 text, multi-valued RDNs, escapes): @peculiar/x509, memoized. */
function genericNameDer(subject: CertificateSpec['subject']): Buffer {
  // Prefixed so that a text subject that looks like JSON never meets an array subject's entry.
  const key = typeof subject === 'string' ? `s:${subject}` : `a:${JSON.stringify(subject)}`;
  let der = nameMemo.get(key);
  if (der) return der;
  try {
    const name =
      typeof subject === 'string' ? new x509.Name(subject) : new x509.Name(subject.map(([k, v]) => ({ [k]: [v] })));
    der = Buffer.from(name.toArrayBuffer());
  } catch (err) {
    // The generic builder's error, word for word.
    throw new MeshError(ErrorCodes.NAME, `subject "${JSON.stringify(subject)}" is not a valid distinguished name: ${describeError(err)}`, {
      subject: 'subject',
    });
  }
  if (nameMemo.size >= MEMO_LIMIT) nameMemo.clear();
  nameMemo.set(key, der);
  return der;
}

function subjectDer(subject: CertificateSpec['subject']): Buffer {
  if (!Array.isArray(subject)) return genericNameDer(subject);
  if (subject.length === 0) return EMPTY_NAME;
  const rdns: Buffer[] = [];
  for (const pair of subject) {
    const atv = attributeDer(pair);
    if (!atv) return genericNameDer(subject);
    rdns.push(tlv1(SET, atv));
  }
  return tlv(SEQUENCE, rdns);
}

// ---- serial, validity ----

function serialDer(serial: string): Buffer {
  const hex = serialToDerHex(serial);
  // The generic generator silently swaps a zero serial for a random one; a spec's serial is what gets recorded.
  if (/^0+$/.test(hex)) throw new MeshError(ErrorCodes.SERIAL, `serial "${serial}" is zero; a certificate serial must be positive`, { subject: 'serial' });
  return tlv1(INTEGER, Buffer.from(hex, 'hex'));
}

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 (as the generic builder), and GeneralizedTime
 * before 1950 too, which UTCTime cannot express (the generic builder writes a UTCTime read back a century later).
 */
function timeDer(date: Date, field: string): Buffer {
  const d = wholeSeconds(date);
  const year = d.getUTCFullYear();
  if (!Number.isFinite(year) || year < 0 || year > 9999) {
    throw new MeshError(ErrorCodes.CERT_BUILD, `${field}: ${String(date)} is not a date a certificate can hold`, { subject: field });
  }
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  if (year >= 1950 && year <= 2049) return tlv1(UTC_TIME, Buffer.from(`${two(year % 100)}${rest}`, 'latin1'));
  return tlv1(GENERALIZED_TIME, Buffer.from(`${String(year).padStart(4, '0')}${rest}`, 'latin1'));
}

// ---- subject alternative names ----

/**
 * IP address octets. Node's isIP accepted the text already (checkSan). IPv4-embedded IPv6 ("::ffff:10.0.0.1") is
 * written as its 16 octets; the generic builder's @peculiar/asn1-x509 reads the dotted tail as one hex group and
 * certifies a different address. A zone id ("%eth0") means nothing outside the host: dropped, as the generic does.
 */
export function ipAddressOctets(ip: string): Buffer {
  const zone = ip.indexOf('%');
  const addr = zone >= 0 ? ip.slice(0, zone) : ip;
  if (isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  const groups: number[] = [];
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.') && isIPv4(g)) {
        const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else out.push(parseInt(g, 16));
    }
    return out;
  };
  const gap = addr.indexOf('::');
  if (gap >= 0) {
    const left = parse(addr.slice(0, gap));
    const right = parse(addr.slice(gap + 2));
    groups.push(...left, ...new Array<number>(Math.max(0, 8 - left.length - right.length)).fill(0), ...right);
  } else groups.push(...parse(addr));
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) {
    throw new MeshError(ErrorCodes.SAN, `IP address "${ip}" cannot be encoded`, { subject: ip });
  }
  const out = Buffer.allocUnsafe(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

function ia5(value: string, field: string, what: string): Buffer {
  // IA5String is ASCII (RFC 5280 §4.2.1.6: IRIs must be mapped to URIs first). The generic builder would write
  // the low byte of each character, which no relying party reads back as the same name.
  if (!ASCII.test(value)) {
    throw new MeshError(ErrorCodes.SAN, `${field}: ${what} "${value}" is not ASCII; percent-encode it (IRIs are not allowed in certificates)`, {
      subject: field,
    });
  }
  return Buffer.from(value, 'latin1');
}

function generalNameDer(san: San, field: string): Buffer {
  const c = checkSan(san, field); // the generic builder's checks and normalization (lowercase DNS, no trailing dot)
  switch (c.type) {
    case 'dns':
      return tlv1(GN_DNS, Buffer.from(c.value, 'latin1'));
    case 'ip':
      return tlv1(GN_IP, ipAddressOctets(c.value));
    case 'uri':
      return tlv1(GN_URI, ia5(c.value, field, 'URI'));
    case 'email':
      return tlv1(GN_EMAIL, ia5(c.value, field, 'email address'));
  }
}

function sanExtension(sans: San[], critical: boolean): Buffer {
  const names: Buffer[] = new Array(sans.length);
  for (let i = 0; i < sans.length; i++) names[i] = generalNameDer(sans[i]!, `sans[${i}]`);
  return extension(OID.subjectAltName, critical, tlv(SEQUENCE, names));
}

// ---- the builder ----

/**
 * A memo key for a list of strings that no other list shares. A one-element list (the usual CRL URL, OCSP URL) skips
 * JSON.stringify, a measurable part of building on the hot path; "1:" cannot begin a JSON array.
 */
function listKey(items: readonly string[]): string {
  return items.length === 1 ? `1:${items[0]}` : JSON.stringify(items);
}

/** The extensions of `spec`, in GenericCertificateBuilder's order (specExtensions), as DER. */
function extensionsDer(spec: CertificateSpec, ski: Buffer, issuerKeyId: string): Buffer[] {
  const out: Buffer[] = [];
  const bc = spec.basicConstraints;
  if (bc) {
    const pathLen = bc.ca && bc.pathLen != null ? bc.pathLen : null;
    out.push(
      genericExtension(`bc:${bc.ca}:${pathLen}:${bc.critical ?? true}`, OID.basicConstraints, {
        basicConstraints: { ca: bc.ca, pathLen, ...(bc.critical === undefined ? {} : { critical: bc.critical }) },
      }),
    );
  }
  if (spec.keyUsage?.length) out.push(genericExtension(`ku:${listKey(spec.keyUsage)}`, OID.keyUsage, { keyUsage: spec.keyUsage }));
  if (spec.extKeyUsage?.length) {
    out.push(genericExtension(`eku:${listKey(spec.extKeyUsage)}`, OID.extKeyUsage, { extKeyUsage: spec.extKeyUsage }));
  }
  out.push(skiExtension(ski));
  out.push(genericExtension(`aki:${issuerKeyId}`, OID.authorityKeyIdentifier, {}, issuerKeyId));
  if (spec.sans?.length) out.push(sanExtension(spec.sans, spec.sanCritical ?? false));
  if (spec.crlDistributionPoints?.length) {
    const urls = spec.crlDistributionPoints;
    out.push(genericExtension(`crl:${listKey(urls)}`, OID.crlDistributionPoints, { crlDistributionPoints: urls }));
  }
  if (spec.ocspUrls?.length || spec.caIssuersUrls?.length) {
    const aia = { ocspUrls: spec.ocspUrls ?? [], caIssuersUrls: spec.caIssuersUrls ?? [] };
    const key = aia.caIssuersUrls.length === 0 ? `aia-ocsp:${listKey(aia.ocspUrls)}` : `aia:${JSON.stringify(aia)}`;
    out.push(genericExtension(key, OID.authorityInfoAccess, aia));
  }
  if (spec.nameConstraints) {
    const nc = spec.nameConstraints;
    out.push(genericExtension(`nc:${JSON.stringify(nc)}`, OID.nameConstraints, { nameConstraints: nc }));
  }
  if (spec.mustStaple) out.push(genericExtension('must-staple', OID.tlsFeature, { mustStaple: true }));
  if (spec.ocspNoCheck) out.push(genericExtension('ocsp-nocheck', OID.ocspNoCheck, { ocspNoCheck: true }));
  // Arbitrary values: not memoized (they may differ per certificate); framed as the generic builder frames them.
  for (const e of spec.extraExtensions ?? []) out.push(Buffer.from(new x509.Extension(e.oid, e.critical, e.value).rawData));
  return out;
}

/**
 * A CertificateBuilder that writes DER itself and signs with node:crypto and the signer's cached KeyObject. For the
 * same spec it writes the same TBSCertificate bytes as GenericCertificateBuilder (a property test checks thousands
 * of specs), except where the generic one is wrong: IPv4-embedded IPv6 SANs, dates before 1950, non-ASCII URI or
 * email SANs (refused here), a zero serial (refused here), and an issuer name it would re-encode (copied verbatim
 * here, as name chaining needs).
 */
export class TemplateCertificateBuilder implements CertificateBuilder {
  readonly name = 'template';

  build(spec: CertificateSpec, issuer: Issuer | 'self', signer: SigningKey): Promise<Buffer> {
    // Not an async function: its machinery costs a few µs per call, a tenth of the whole build.
    try {
      return Promise.resolve(this.buildSync(spec, issuer, signer));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The same as build(), without the promise: the signature is synchronous (~25 µs for P-256). */
  buildSync(spec: CertificateSpec, issuer: Issuer | 'self', signer: SigningKey): Buffer {
    return guard(spec, () => {
      const tbs = this.#tbs(spec, issuer, signer.scheme);
      // ECDSA signatures come out DER-encoded (Ecdsa-Sig-Value), the form X.509 wants; WebCrypto's would be raw r‖s.
      const signature = nodeSign(signer.scheme.digest, tbs, signer.privateKey);
      return tlv(SEQUENCE, [tbs, signatureAlgorithmDer(signer.scheme), tlv(BIT_STRING, [ZERO_UNUSED_BITS, signature])]);
    });
  }

  /** The DER TBSCertificate this builder signs (for tests and for signers outside node:crypto, e.g. PKCS#11). */
  tbs(spec: CertificateSpec, issuer: Issuer | 'self', scheme: SignatureScheme): Buffer {
    return guard(spec, () => this.#tbs(spec, issuer, scheme));
  }

  #tbs(spec: CertificateSpec, issuer: Issuer | 'self', scheme: SignatureScheme): Buffer {
    const key = keyInfoOf(spec.publicKey);
    const subject = subjectDer(spec.subject);
    const issuerName = issuer === 'self' ? subject : issuer.subjectDer;
    const issuerKeyId = issuer === 'self' ? key.ski.toString('hex') : issuer.keyId;
    const validity = tlv(SEQUENCE, [timeDer(spec.notBefore, 'notBefore'), timeDer(spec.notAfter, 'notAfter')]);
    const extensions = tlv1(EXTENSIONS_TAG, tlv(SEQUENCE, extensionsDer(spec, key.ski, issuerKeyId)));
    return tlv(SEQUENCE, [
      VERSION_V3,
      serialDer(spec.serial),
      signatureAlgorithmDer(scheme),
      issuerName,
      validity,
      subject,
      key.spki,
      extensions,
    ]);
  }
}

/** Typed errors pass through; anything else becomes CERT_BUILD naming the serial, as in the generic builder. */
function guard<T>(spec: CertificateSpec, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError(ErrorCodes.CERT_BUILD, `cannot build certificate ${spec.serial}: ${describeError(err)}`, { cause: err });
  }
}

export const templateCertificateBuilder = new TemplateCertificateBuilder();
