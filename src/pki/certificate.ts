import { createHash, X509Certificate as NodeX509, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { NameConstraints as AsnNameConstraints, GeneralName as AsnGeneralName } from '@peculiar/asn1-x509';
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
export class Certificate {
  readonly der: Buffer;
  readonly x509: x509.X509Certificate;
  readonly #tbs: asn1js.AsnType[];
  #node: NodeX509 | undefined;
  #publicKey: KeyObject | undefined;

  private constructor(der: Buffer, source: string) {
    this.der = der;
    const root = parseDer(der, source, ErrorCodes.CERT_PARSE);
    const top = children(root);
    const tbs = top[0] ? children(top[0]) : [];
    if (top.length !== 3 || tbs.length < 6) {
      throw new MeshError(ErrorCodes.CERT_PARSE, `${source}: not an X.509 certificate (wrong structure)`, { subject: source });
    }
    // TBSCertificate starts with an optional [0] version; everything after is positional.
    this.#tbs = (tbs[0] as { idBlock: { tagClass: number } }).idBlock.tagClass === 3 ? tbs.slice(1) : tbs;
    try {
      this.x509 = new x509.X509Certificate(der);
    } catch (err) {
      throw new MeshError(ErrorCodes.CERT_PARSE, `${source}: not an X.509 certificate: ${describeError(err)}`, { subject: source, cause: err });
    }
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

  get subject(): string {
    return this.x509.subject;
  }

  get issuer(): string {
    return this.x509.issuer;
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
    return this.x509.subjectName.getField('CN')[0] ?? null;
  }

  get notBefore(): Date {
    return this.x509.notBefore;
  }

  get notAfter(): Date {
    return this.x509.notAfter;
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

  #ext<T extends x509.Extension>(oid: string): T | null {
    return (this.x509.extensions.find((e) => e.type === oid) as T | undefined) ?? null;
  }

  hasExtension(oid: string): boolean {
    return this.#ext(oid) !== null;
  }

  get extensionOids(): Array<{ oid: string; critical: boolean }> {
    return this.x509.extensions.map((e) => ({ oid: e.type, critical: e.critical }));
  }

  get basicConstraints(): BasicConstraintsInfo | null {
    const e = this.#ext<x509.BasicConstraintsExtension>(OID.basicConstraints);
    if (!e) return null;
    return { ca: e.ca, pathLen: e.pathLength ?? null, critical: e.critical };
  }

  get isCA(): boolean {
    return this.basicConstraints?.ca === true;
  }

  get keyUsage(): KeyUsageName[] | null {
    const e = this.#ext<x509.KeyUsagesExtension>(OID.keyUsage);
    return e ? keyUsageNames(e.usages) : null;
  }

  get keyUsageCritical(): boolean {
    return this.#ext(OID.keyUsage)?.critical ?? false;
  }

  /** EKU OIDs, or null when the extension is absent (which means any purpose). */
  get extKeyUsage(): string[] | null {
    const e = this.#ext<x509.ExtendedKeyUsageExtension>(OID.extKeyUsage);
    return e ? Array.from(e.usages, (u) => String(u)) : null;
  }

  get extKeyUsageNames(): string[] | null {
    return this.extKeyUsage?.map(ekuName) ?? null;
  }

  get sans(): SanSet {
    const set = emptySanSet();
    const e = this.#ext<x509.SubjectAlternativeNameExtension>(OID.subjectAltName);
    if (!e) return set;
    for (const n of e.names.items) {
      if (n.type === 'dns') set.dns.push(n.value);
      else if (n.type === 'ip') set.ip.push(n.value);
      else if (n.type === 'url') set.uri.push(n.value);
      else if (n.type === 'email') set.email.push(n.value);
    }
    return set;
  }

  get sanCritical(): boolean {
    return this.#ext(OID.subjectAltName)?.critical ?? false;
  }

  get spiffeIds(): string[] {
    return this.sans.uri.filter((u) => u.toLowerCase().startsWith('spiffe://'));
  }

  get subjectKeyId(): string | null {
    return this.#ext<x509.SubjectKeyIdentifierExtension>(OID.subjectKeyIdentifier)?.keyId.toLowerCase() ?? null;
  }

  get authorityKeyId(): string | null {
    return this.#ext<x509.AuthorityKeyIdentifierExtension>(OID.authorityKeyIdentifier)?.keyId?.toLowerCase() ?? null;
  }

  /** The key id that identifies this certificate as an issuer: its SKI, or the SHA-1 of its key (RFC 5280 method 1). */
  get issuerKeyId(): string {
    return this.subjectKeyId ?? createHash('sha1').update(this.publicKeyBits).digest('hex');
  }

  get crlDistributionPoints(): string[] {
    const e = this.#ext<x509.CRLDistributionPointsExtension>(OID.crlDistributionPoints);
    if (!e) return [];
    return Array.from(e.distributionPoints).flatMap((dp) =>
      (dp.distributionPoint?.fullName ?? []).flatMap((n) => (n.uniformResourceIdentifier ? [n.uniformResourceIdentifier] : [])),
    );
  }

  get ocspUrls(): string[] {
    const e = this.#ext<x509.AuthorityInfoAccessExtension>(OID.authorityInfoAccess);
    return e ? Array.from(e.ocsp).filter((n) => n.type === 'url').map((n) => n.value) : [];
  }

  get caIssuersUrls(): string[] {
    const e = this.#ext<x509.AuthorityInfoAccessExtension>(OID.authorityInfoAccess);
    return e ? Array.from(e.caIssuers).filter((n) => n.type === 'url').map((n) => n.value) : [];
  }

  /** TLS features (RFC 7633); 5 is status_request, i.e. OCSP must-staple. */
  get tlsFeatures(): number[] {
    const e = this.#ext(OID.tlsFeature);
    if (!e) return [];
    try {
      const seq = parseDer(new Uint8Array(e.value), 'TLS feature extension');
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
    const e = this.#ext(OID.nameConstraints);
    if (!e) return null;
    const nc = AsnConvert.parse(e.value, AsnNameConstraints);
    const permitted = { ...emptySanSet(), dirNames: [] as string[] };
    const excluded = { ...emptySanSet(), dirNames: [] as string[] };
    generalNamesInto((nc.permittedSubtrees ?? []).map((s) => s.base), permitted);
    generalNamesInto((nc.excludedSubtrees ?? []).map((s) => s.base), excluded);
    return { permitted, excluded, critical: e.critical };
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
