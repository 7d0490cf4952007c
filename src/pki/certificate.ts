import { createHash, X509Certificate as NodeX509, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityInfoAccessSyntax,
  AuthorityKeyIdentifier,
  BasicConstraints,
  CRLDistributionPoints,
  ExtendedKeyUsage,
  KeyUsage,
  NameConstraints as AsnNameConstraints,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  type GeneralName as AsnGeneralName,
} from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';
import './crypto-provider.js';
import { children, parseDer, rawBytes } from './der.js';
import { emptySanSet, type SanSet } from './general-names.js';
import { describeKey, type KeyDescription } from './keys.js';
import { EKU, OID, ekuName, keyUsageNames, type KeyUsageName } from './oids.js';
import { decodePem, encodePem, looksLikePem } from './pem.js';
import { serialFromBytes } from './serial.js';

export interface NameConstraintsInfo {
  permitted: SanSet & { dirNames: string[] };
  excluded: SanSet & { dirNames: string[] };
  critical: boolean;
}

export interface BasicConstraintsInfo {
  ca: boolean;
  pathLen: number | null;
  critical: boolean;
}

function generalNamesInto(names: AsnGeneralName[], set: SanSet & { dirNames: string[] }): void {
  for (const n of names) {
    if (n.dNSName !== undefined) set.dns.push(n.dNSName);
    else if (n.iPAddress !== undefined) set.ip.push(n.iPAddress);
    else if (n.uniformResourceIdentifier !== undefined) set.uri.push(n.uniformResourceIdentifier);
    else if (n.rfc822Name !== undefined) set.email.push(n.rfc822Name);
    else if (n.directoryName !== undefined) set.dirNames.push(new x509.Name(AsnConvert.serialize(n.directoryName)).toString());
  }
}

/**
 * A parsed X.509 certificate: parsed once, read many times. Fields are plain values (hex serials and key ids,
 * Dates, string arrays) so that the CLI, the ledger and JSON output share one model.
 */
/** One extension as encoded: its value is decoded only when a getter asks for it. */
export interface RawExtension {
  oid: string;
  critical: boolean;
  /** The extnValue OCTET STRING's contents. */
  value: Buffer;
}

const AD_OCSP = '1.3.6.1.5.5.7.48.1';
const AD_CA_ISSUERS = '1.3.6.1.5.5.7.48.2';

type AsnTime = asn1js.UTCTime | asn1js.GeneralizedTime;

export class Certificate {
  readonly der: Buffer;
  readonly #source: string;
  readonly #tbs: asn1js.AsnType[];
  readonly #extensions: RawExtension[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  #x509: x509.X509Certificate | undefined;
  #subjectName: x509.Name | undefined;
  #subject: string | undefined;
  #issuer: string | undefined;
  #decoded = new Map<string, unknown>();
  #node: NodeX509 | undefined;
  #publicKey: KeyObject | undefined;

  /**
   * Parsed once with asn1js: the positional TBS fields, the validity and the extension list. Extension values are
   * decoded on first use and names rendered on first use, because a full @peculiar/x509 parse of the same bytes
   * cost several times the asn1js parse on every peer certificate (gateway MUTUAL, CA renewals, the agent).
   */
  private constructor(der: Buffer, source: string) {
    this.der = der;
    this.#source = source;
    const root = parseDer(der, source, ErrorCodes.CERT_PARSE);
    const top = children(root);
    const tbs = top[0] ? children(top[0]) : [];
    const bad = (why: string) => new MeshError(ErrorCodes.CERT_PARSE, `${source}: not an X.509 certificate (${why})`, { subject: source });
    if (top.length !== 3 || tbs.length < 6) throw bad('wrong structure');
    // TBSCertificate starts with an optional [0] version; everything after is positional.
    const first = tbs[0] as asn1js.BaseBlock;
    this.#tbs = first.idBlock.tagClass === 3 && first.idBlock.tagNumber === 0 ? tbs.slice(1) : tbs;
    if (this.#tbs.length < 6 || !(this.#tbs[0] instanceof asn1js.Integer)) throw bad('no serial number');
    const validity = children(this.#tbs[3]!);
    const times = validity.map((t) => (t instanceof asn1js.UTCTime || t instanceof asn1js.GeneralizedTime ? (t as AsnTime).toDate() : null));
    if (times.length !== 2 || !times[0] || !times[1] || Number.isNaN(times[0].getTime()) || Number.isNaN(times[1].getTime())) {
      throw bad('unreadable validity');
    }
    this.notBefore = times[0];
    this.notAfter = times[1];
    this.#extensions = readExtensions(this.#tbs.slice(6), bad);
  }

  static fromDer(der: Uint8Array, source = 'certificate'): Certificate {
    return new Certificate(Buffer.from(der), source);
  }

  /** One certificate from PEM (the first CERTIFICATE block) or DER. */
  static parse(data: string | Uint8Array, source = 'certificate'): Certificate {
    const all = Certificate.parseAll(data, source);
    return all[0]!;
  }

  /** Every certificate of a PEM bundle, in file order; DER input gives one. */
  static parseAll(data: string | Uint8Array, source = 'certificate'): Certificate[] {
    if (looksLikePem(data)) {
      const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
      const blocks = decodePem(text, source).filter((b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE');
      if (blocks.length === 0) {
        throw new MeshError(ErrorCodes.PEM, `${source}: no CERTIFICATE block`, { subject: source });
      }
      return blocks.map((b, i) => new Certificate(b.der, blocks.length > 1 ? `${source} (certificate ${i + 1})` : source));
    }
    if (typeof data === 'string') {
      throw new MeshError(ErrorCodes.CERT_PARSE, `${source}: neither PEM nor DER`, { subject: source });
    }
    return [new Certificate(Buffer.from(data), source)];
  }

  get pem(): string {
    return encodePem('CERTIFICATE', this.der);
  }

  /** Node's view of the same DER, for signature checks and hostname matching. */
  get node(): NodeX509 {
    return (this.#node ??= new NodeX509(this.der));
  }

  get serial(): string {
    return serialFromBytes((this.#tbs[0] as asn1js.Integer).valueBlock.valueHexView);
  }

  /** The @peculiar/x509 view of the same DER, made on first use (signature algorithm names, JSON output). */
  get x509(): x509.X509Certificate {
    if (!this.#x509) {
      try {
        this.#x509 = new x509.X509Certificate(this.der);
      } catch (err) {
        throw new MeshError(ErrorCodes.CERT_PARSE, `${this.#source}: not an X.509 certificate: ${describeError(err)}`, { subject: this.#source, cause: err });
      }
    }
    return this.#x509;
  }

  /** The subject Name (RDNs), for renderings other than the one-line `subject`. */
  get subjectName(): x509.Name {
    return (this.#subjectName ??= new x509.Name(this.subjectDer));
  }

  get subject(): string {
    return (this.#subject ??= this.subjectName.toString());
  }

  get issuer(): string {
    return (this.#issuer ??= new x509.Name(this.issuerDer).toString());
  }

  /** DER of the issuer Name exactly as encoded (OCSP issuerNameHash, chaining by bytes). */
  get issuerDer(): Buffer {
    return rawBytes(this.#tbs[2]!);
  }

  get subjectDer(): Buffer {
    return rawBytes(this.#tbs[4]!);
  }

  get spkiDer(): Buffer {
    return rawBytes(this.#tbs[5]!);
  }

  /** The subjectPublicKey BIT STRING contents, hashed for OCSP issuerKeyHash and SHA-1 key identifiers. */
  get publicKeyBits(): Buffer {
    const bits = children(this.#tbs[5]!)[1] as asn1js.BitString;
    return Buffer.from(bits.valueBlock.valueHexView);
  }

  get commonName(): string | null {
    return this.subjectName.getField('CN')[0] ?? null;
  }

  get publicKey(): KeyObject {
    return (this.#publicKey ??= this.node.publicKey);
  }

  get key(): KeyDescription {
    return describeKey(this.publicKey, 'certificate public key');
  }

  get signatureAlgorithm(): string {
    const alg = this.x509.signatureAlgorithm as { name?: string; hash?: { name?: string } };
    return [alg.name, alg.hash?.name].filter(Boolean).join(' ');
  }

  get fingerprint256(): string {
    return createHash('sha256').update(this.der).digest('hex');
  }

  /** The extension as encoded, or null when absent. */
  extension(oid: string): RawExtension | null {
    return this.#extensions.find((e) => e.oid === oid) ?? null;
  }

  /** An extension's value decoded once with its @peculiar/asn1-x509 schema; a malformed value is CERT_PARSE. */
  #decode<T>(oid: string, schema: new () => T): T | null {
    if (this.#decoded.has(oid)) return this.#decoded.get(oid) as T;
    const e = this.extension(oid);
    let value: T | null = null;
    if (e) {
      try {
        value = AsnConvert.parse(e.value, schema);
      } catch (err) {
        throw new MeshError(ErrorCodes.CERT_PARSE, `${this.#source}: malformed extension ${oid}: ${describeError(err)}`, { subject: this.#source, cause: err });
      }
    }
    this.#decoded.set(oid, value);
    return value;
  }

  hasExtension(oid: string): boolean {
    return this.extension(oid) !== null;
  }

  get extensionOids(): Array<{ oid: string; critical: boolean }> {
    return this.#extensions.map((e) => ({ oid: e.oid, critical: e.critical }));
  }

  get basicConstraints(): BasicConstraintsInfo | null {
    const e = this.#decode(OID.basicConstraints, BasicConstraints);
    if (!e) return null;
    return { ca: e.cA, pathLen: e.pathLenConstraint ?? null, critical: this.extension(OID.basicConstraints)!.critical };
  }

  get isCA(): boolean {
    return this.basicConstraints?.ca === true;
  }

  get keyUsage(): KeyUsageName[] | null {
    const e = this.#decode(OID.keyUsage, KeyUsage);
    return e ? keyUsageNames(e.toNumber()) : null;
  }

  get keyUsageCritical(): boolean {
    return this.extension(OID.keyUsage)?.critical ?? false;
  }

  /** EKU OIDs, or null when the extension is absent (which means any purpose). */
  get extKeyUsage(): string[] | null {
    const e = this.#decode(OID.extKeyUsage, ExtendedKeyUsage);
    return e ? Array.from(e, (u) => String(u)) : null;
  }

  get extKeyUsageNames(): string[] | null {
    return this.extKeyUsage?.map(ekuName) ?? null;
  }

  get sans(): SanSet {
    const set = emptySanSet();
    const names = this.#decode(OID.subjectAltName, SubjectAlternativeName);
    if (!names) return set;
    for (const n of names) {
      if (n.dNSName !== undefined) set.dns.push(n.dNSName);
      else if (n.iPAddress !== undefined) set.ip.push(n.iPAddress);
      else if (n.uniformResourceIdentifier !== undefined) set.uri.push(n.uniformResourceIdentifier);
      else if (n.rfc822Name !== undefined) set.email.push(n.rfc822Name);
    }
    return set;
  }

  get sanCritical(): boolean {
    return this.extension(OID.subjectAltName)?.critical ?? false;
  }

  get spiffeIds(): string[] {
    return this.sans.uri.filter((u) => u.toLowerCase().startsWith('spiffe://'));
  }

  get subjectKeyId(): string | null {
    const ski = this.#decode(OID.subjectKeyIdentifier, SubjectKeyIdentifier);
    return ski ? Buffer.from(ski.buffer).toString('hex') : null;
  }

  get authorityKeyId(): string | null {
    const kid = this.#decode(OID.authorityKeyIdentifier, AuthorityKeyIdentifier)?.keyIdentifier;
    return kid ? Buffer.from(kid.buffer).toString('hex') : null;
  }

  /** The key id that identifies this certificate as an issuer: its SKI, or the SHA-1 of its key (RFC 5280 method 1). */
  get issuerKeyId(): string {
    return this.subjectKeyId ?? createHash('sha1').update(this.publicKeyBits).digest('hex');
  }

  get crlDistributionPoints(): string[] {
    const dps = this.#decode(OID.crlDistributionPoints, CRLDistributionPoints);
    if (!dps) return [];
    return Array.from(dps).flatMap((dp) => uris(dp.distributionPoint?.fullName ?? []));
  }

  get ocspUrls(): string[] {
    return this.#accessUrls(AD_OCSP);
  }

  get caIssuersUrls(): string[] {
    return this.#accessUrls(AD_CA_ISSUERS);
  }

  #accessUrls(method: string): string[] {
    const aia = this.#decode(OID.authorityInfoAccess, AuthorityInfoAccessSyntax);
    return aia ? uris(Array.from(aia).filter((d) => d.accessMethod === method).map((d) => d.accessLocation)) : [];
  }

  /** TLS features (RFC 7633); 5 is status_request, i.e. OCSP must-staple. */
  get tlsFeatures(): number[] {
    const e = this.extension(OID.tlsFeature);
    if (!e) return [];
    try {
      const seq = parseDer(e.value, 'TLS feature extension');
      return children(seq).map((i) => (i as asn1js.Integer).valueBlock.valueDec);
    } catch {
      return [];
    }
  }

  get mustStaple(): boolean {
    return this.tlsFeatures.includes(5);
  }

  get ocspNoCheck(): boolean {
    return this.hasExtension(OID.ocspNoCheck);
  }

  get nameConstraints(): NameConstraintsInfo | null {
    const nc = this.#decode(OID.nameConstraints, AsnNameConstraints);
    if (!nc) return null;
    const permitted = { ...emptySanSet(), dirNames: [] as string[] };
    const excluded = { ...emptySanSet(), dirNames: [] as string[] };
    generalNamesInto((nc.permittedSubtrees ?? []).map((s) => s.base), permitted);
    generalNamesInto((nc.excludedSubtrees ?? []).map((s) => s.base), excluded);
    return { permitted, excluded, critical: this.extension(OID.nameConstraints)!.critical };
  }

  get isSelfIssued(): boolean {
    return this.subjectDer.equals(this.issuerDer);
  }

  /** True when `issuer`'s key made this certificate's signature (and names chain by bytes). */
  isIssuedBy(issuer: Certificate): boolean {
    if (!this.issuerDer.equals(issuer.subjectDer)) return false;
    return this.verifySignature(issuer.publicKey);
  }

  verifySignature(publicKey: KeyObject): boolean {
    try {
      return this.node.verify(publicKey);
    } catch {
      return false;
    }
  }

  validAt(at: Date): boolean {
    return at.getTime() >= this.notBefore.getTime() && at.getTime() <= this.notAfter.getTime();
  }

  hasEku(oid: string): boolean {
    const eku = this.extKeyUsage;
    return eku === null || eku.includes(oid) || eku.includes(EKU.any);
  }
}

function uris(names: AsnGeneralName[]): string[] {
  return names.flatMap((n) => (n.uniformResourceIdentifier !== undefined ? [n.uniformResourceIdentifier] : []));
}

/**
 * The [3] EXPLICIT Extensions after subjectPublicKeyInfo (issuer/subject unique IDs, [1] and [2], may come first):
 * each an OID, an optional critical BOOLEAN and the OCTET STRING value.
 */
function readExtensions(rest: asn1js.AsnType[], bad: (why: string) => MeshError): RawExtension[] {
  const wrapper = rest.find((el) => {
    const id = (el as asn1js.BaseBlock).idBlock;
    return id.tagClass === 3 && id.tagNumber === 3;
  });
  if (!wrapper) return [];
  const list = children(wrapper)[0];
  if (!(list instanceof asn1js.Sequence)) throw bad('extensions are not a SEQUENCE');
  const seen = new Set<string>();
  return children(list).map((ext) => {
    const parts = children(ext);
    const oid = parts[0];
    const critical = parts.length === 3 ? parts[1] : null;
    const value = parts[parts.length - 1];
    if (!(oid instanceof asn1js.ObjectIdentifier) || !(value instanceof asn1js.OctetString) || parts.length > 3 || (critical && !(critical instanceof asn1js.Boolean))) {
      throw bad('malformed extension');
    }
    const id = oid.valueBlock.toString();
    // RFC 5280 4.2: a certificate must not include more than one instance of a particular extension.
    if (seen.has(id)) throw bad(`extension ${id} appears twice`);
    seen.add(id);
    const bytes = value.valueBlock.valueHexView;
    return { oid: id, critical: critical ? (critical as asn1js.Boolean).valueBlock.value : false, value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
  });
}
