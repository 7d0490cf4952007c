import { sign as nodeSign } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier as AsnAlgorithmIdentifier,
  CertificateList,
  CRLReason,
  Extension as AsnExtension,
  InvalidityDate,
  Name as AsnName,
  RevokedCertificate,
  TBSCertList,
  Time,
  Version,
} from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { ErrorCodes, MeshError, describeError, wholeSeconds } from '../core/index.js';
import type { Certificate } from './certificate.js';
import './crypto-provider.js';
import { children, parseDer, rawBytes } from './der.js';
import type { SigningKey } from './keys.js';
import { OID } from './oids.js';
import { decodePem, encodePem, looksLikePem } from './pem.js';
import { normalizeSerial, serialToDerHex } from './serial.js';
import { signatureAlgorithmName, verifySignature } from './signature-algorithms.js';

/** CRLReason names as RFC 5280 §5.3.1 spells them; value 7 is unused. */
export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  'removeFromCRL',
  'privilegeWithdrawn',
  'aACompromise',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

const REASON_CODES: Record<RevocationReason, number> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

/** The CRLReason ENUMERATED value (shared by CRL entries and OCSP RevokedInfo). */
export function revocationReasonCode(reason: RevocationReason): number {
  return REASON_CODES[reason];
}

/** The reason for a CRLReason value, or null for values RFC 5280 does not define (7, > 10). */
export function revocationReasonFromCode(code: number): RevocationReason | null {
  const hit = (Object.entries(REASON_CODES) as Array<[RevocationReason, number]>).find(([, v]) => v === code);
  return hit ? hit[0] : null;
}

/**
 * Reads a reason as users type it: RFC names in any case, with or without separators, so that OpenSSL's
 * spellings ("CACompromise", "keyCompromise") and "key-compromise" all work.
 */
export function parseRevocationReason(text: string, field = 'reason'): RevocationReason {
  const key = String(text).replace(/[^A-Za-z]/g, '').toLowerCase();
  const hit = REVOCATION_REASONS.find((r) => r.toLowerCase() === key);
  if (!hit || key === '') {
    throw new MeshError(ErrorCodes.REVOCATION_REASON, `${field}: "${text}" is not a revocation reason; use one of ${REVOCATION_REASONS.join(', ')}`, {
      subject: field,
    });
  }
  return hit;
}

export interface CrlEntrySpec {
  /** Hex serial in any form normalizeSerial accepts. */
  serial: string;
  revokedAt: Date;
  /** Omitted from the CRL when 'unspecified', as RFC 5280 §5.3.1 recommends. */
  reason?: RevocationReason;
  invalidityDate?: Date;
}

export interface BuildCrlOptions {
  /** The CA certificate whose key signs the CRL: its subject becomes the CRL issuer, its key id the AKI. */
  issuer: Certificate;
  signer: SigningKey;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Monotonically increasing; RFC 5280 caps it at 20 octets. */
  crlNumber: bigint;
  entries: CrlEntrySpec[];
}

/** The AlgorithmIdentifier of a signature: RSA PKCS#1 carries NULL parameters, ECDSA and Ed25519 none (RFC 5758, 8410). */
function asnSignatureAlgorithm(signer: SigningKey): AsnAlgorithmIdentifier {
  return new AsnAlgorithmIdentifier({
    algorithm: signer.scheme.oid,
    ...(signer.scheme.webcrypto.name === 'RSASSA-PKCS1-v1_5' ? { parameters: null } : {}),
  });
}

function extension(oid: string, value: ArrayBuffer | Uint8Array): AsnExtension {
  return new AsnExtension({ extnID: oid, critical: false, extnValue: new OctetString(value) });
}

/**
 * Builds a signed v2 CRL (RFC 5280 §5) with the CRL number and authority key identifier extensions, and per entry
 * the reason code and invalidity date. The structure is assembled with @peculiar/asn1-x509 rather than its
 * X509CrlGenerator, which writes an empty (invalid, SIZE 1..MAX) crlEntryExtensions for entries without extensions
 * and milliseconds into invalidity dates. Signed with node:crypto on the KeyObject.
 */
export async function buildCrl(options: BuildCrlOptions): Promise<Buffer> {
  const { issuer, signer, crlNumber, entries } = options;
  const thisUpdate = wholeSeconds(options.thisUpdate);
  const nextUpdate = wholeSeconds(options.nextUpdate);
  if (Number.isNaN(thisUpdate.getTime()) || Number.isNaN(nextUpdate.getTime())) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'CRL: thisUpdate and nextUpdate must be valid dates', { subject: 'thisUpdate' });
  }
  if (nextUpdate.getTime() < thisUpdate.getTime()) {
    throw new MeshError(
      ErrorCodes.INVALID_ARGUMENT,
      `CRL: nextUpdate ${nextUpdate.toISOString()} is before thisUpdate ${thisUpdate.toISOString()}`,
      { subject: 'nextUpdate' },
    );
  }
  if (crlNumber < 0n) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `CRL: crlNumber ${crlNumber} must not be negative`, { subject: 'crlNumber' });
  }
  const crlNumberDer = asn1js.Integer.fromBigInt(crlNumber).toBER();
  // Tag + length + at most 20 content octets (RFC 5280 §5.2.3).
  if (crlNumberDer.byteLength > 22) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `CRL: crlNumber ${crlNumber} is longer than 20 octets`, { subject: 'crlNumber' });
  }

  const seen = new Set<string>();
  const revoked = entries.map((e, i) => {
    const serial = normalizeSerial(e.serial, `entries[${i}].serial`);
    if (seen.has(serial)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `CRL: serial ${serial} is listed twice (entries[${i}])`, { subject: `entries[${i}].serial` });
    }
    seen.add(serial);
    if (!(e.revokedAt instanceof Date) || Number.isNaN(e.revokedAt.getTime())) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `CRL: entries[${i}].revokedAt is not a valid date`, { subject: `entries[${i}].revokedAt` });
    }
    const ext: AsnExtension[] = [];
    if (e.reason !== undefined && e.reason !== 'unspecified') {
      const code = REASON_CODES[e.reason];
      if (code === undefined) parseRevocationReason(e.reason, `entries[${i}].reason`);
      ext.push(extension(OID.crlReason, AsnConvert.serialize(new CRLReason(code))));
    }
    if (e.invalidityDate !== undefined) {
      ext.push(extension(OID.invalidityDate, AsnConvert.serialize(new InvalidityDate(wholeSeconds(e.invalidityDate)))));
    }
    return new RevokedCertificate({
      // A copy: a small Buffer's .buffer is Node's shared 8 KiB pool, not just these bytes.
      userCertificate: new Uint8Array(Buffer.from(serialToDerHex(serial), 'hex')).buffer,
      revocationDate: new Time(wholeSeconds(e.revokedAt)),
      ...(ext.length ? { crlEntryExtensions: ext } : {}),
    });
  });

  try {
    const alg = asnSignatureAlgorithm(signer);
    const aki = new x509.AuthorityKeyIdentifierExtension(issuer.issuerKeyId, false);
    const tbs = new TBSCertList({
      version: Version.v2,
      signature: alg,
      // The issuer's subject exactly as encoded, so that name matching by bytes (OpenSSL, Node) succeeds.
      issuer: AsnConvert.parse(issuer.subjectDer, AsnName),
      thisUpdate: new Time(thisUpdate),
      nextUpdate: new Time(nextUpdate),
      ...(revoked.length ? { revokedCertificates: revoked } : {}),
      crlExtensions: [AsnConvert.parse(aki.rawData, AsnExtension), extension(OID.crlNumber, crlNumberDer)],
    });
    const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
    const signature = nodeSign(signer.scheme.digest, tbsDer, { key: signer.privateKey, dsaEncoding: 'der' });
    const list = new CertificateList({ tbsCertList: tbs, signatureAlgorithm: alg, signature: new Uint8Array(signature).buffer });
    return Buffer.from(AsnConvert.serialize(list));
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError(ErrorCodes.CRL_BUILD, `cannot build CRL ${crlNumber} for ${issuer.subject}: ${describeError(err)}`, { cause: err });
  }
}

export interface CrlEntry {
  /** Canonical hex serial. */
  serial: string;
  revokedAt: Date;
  /** 'unspecified' when the entry has no reason code (RFC 5280: absent means unspecified). */
  reason: RevocationReason;
  invalidityDate: Date | null;
}

function isUniversal(el: asn1js.AsnType, tag: number): boolean {
  const id = (el as unknown as { idBlock: { tagClass: number; tagNumber: number } }).idBlock;
  return id.tagClass === 1 && id.tagNumber === tag;
}

/** A parsed X.509 CRL. Parsing checks structure only; `verifySignature` / `assertIssuedBy` check who signed it. */
export class Crl {
  readonly der: Buffer;
  readonly source: string;
  readonly x509: x509.X509Crl;
  /** DER of the issuer Name exactly as encoded, to match a CA certificate's subject by bytes. */
  readonly issuerDer: Buffer;
  /** The CRL number extension, or null when absent. */
  readonly crlNumber: bigint | null;
  /** The authority key identifier (hex), or null when absent. */
  readonly authorityKeyId: string | null;
  readonly entries: readonly CrlEntry[];
  readonly #bySerial: Map<string, CrlEntry>;
  readonly #tbs: Buffer;
  readonly #signatureOid: string;
  readonly #signature: Buffer;

  private constructor(der: Buffer, source: string) {
    this.der = der;
    this.source = source;
    const root = parseDer(der, source, ErrorCodes.CRL_PARSE);
    const top = children(root);
    const tbs = top[0] ? children(top[0]) : [];
    // TBSCertList: [version INTEGER] signature issuer thisUpdate ...; version is optional (v1 CRLs omit it).
    const fields = tbs[0] && isUniversal(tbs[0], 2) ? tbs.slice(1) : tbs;
    if (top.length !== 3 || fields.length < 3 || !isUniversal(fields[1]!, 16)) {
      throw new MeshError(ErrorCodes.CRL_PARSE, `${source}: not an X.509 CRL (wrong structure)`, { subject: source });
    }
    this.issuerDer = rawBytes(fields[1]!);
    // The signed bytes as encoded, for node:crypto verification (sync, and no re-encoding by a library).
    this.#tbs = rawBytes(top[0]!);
    const alg = children(top[1]!)[0];
    const sig = top[2];
    if (!(alg instanceof asn1js.ObjectIdentifier) || !(sig instanceof asn1js.BitString)) {
      throw new MeshError(ErrorCodes.CRL_PARSE, `${source}: not an X.509 CRL (malformed signature)`, { subject: source });
    }
    this.#signatureOid = alg.getValue();
    this.#signature = Buffer.from(sig.valueBlock.valueHexView);
    try {
      this.x509 = new x509.X509Crl(der);
      this.entries = this.x509.entries.map((e) => this.#entry(e));
      this.crlNumber = this.#crlNumber();
      const aki = this.x509.extensions.find((x) => x.type === OID.authorityKeyIdentifier);
      this.authorityKeyId = aki ? (new x509.AuthorityKeyIdentifierExtension(aki.rawData).keyId?.toLowerCase() ?? null) : null;
    } catch (err) {
      if (err instanceof MeshError) throw err;
      throw new MeshError(ErrorCodes.CRL_PARSE, `${source}: not an X.509 CRL: ${describeError(err)}`, { subject: source, cause: err });
    }
    this.#bySerial = new Map(this.entries.map((e) => [e.serial, e]));
  }

  #entry(e: x509.X509CrlEntry): CrlEntry {
    const serial = normalizeSerial(e.serialNumber, `${this.source}: entry serial`);
    let reason: RevocationReason = 'unspecified';
    if (e.reason !== undefined) {
      const r = revocationReasonFromCode(Number(e.reason));
      if (!r) {
        throw new MeshError(ErrorCodes.CRL_PARSE, `${this.source}: entry ${serial} has an undefined reason code ${e.reason}`, { subject: this.source });
      }
      reason = r;
    }
    return { serial, revokedAt: e.revocationDate, reason, invalidityDate: e.invalidity ?? null };
  }

  #crlNumber(): bigint | null {
    const e = this.x509.extensions.find((x) => x.type === OID.crlNumber);
    if (!e) return null;
    const n = asn1js.fromBER(new Uint8Array(e.value));
    if (n.offset !== e.value.byteLength || !(n.result instanceof asn1js.Integer)) {
      throw new MeshError(ErrorCodes.CRL_PARSE, `${this.source}: malformed CRL number extension`, { subject: this.source });
    }
    return n.result.toBigInt();
  }

  static fromDer(der: Uint8Array, source = 'CRL'): Crl {
    return new Crl(Buffer.from(der), source);
  }

  /** The first CRL of PEM (`X509 CRL`, or `CRL` as some tools write it) or DER input. */
  static parse(data: string | Uint8Array, source = 'CRL'): Crl {
    return Crl.parseAll(data, source)[0]!;
  }

  /** Every CRL of the input in order: a CRL bundle (ca.crl) may hold one CRL per CA of the chain. */
  static parseAll(data: string | Uint8Array, source = 'CRL'): Crl[] {
    if (looksLikePem(data)) {
      const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
      const blocks = decodePem(text, source).filter((b) => b.label === 'X509 CRL' || b.label === 'CRL');
      if (blocks.length === 0) {
        throw new MeshError(ErrorCodes.PEM, `${source}: no X509 CRL block`, { subject: source });
      }
      return blocks.map((b, i) => new Crl(b.der, blocks.length > 1 ? `${source} (CRL ${i + 1})` : source));
    }
    if (typeof data === 'string') {
      throw new MeshError(ErrorCodes.CRL_PARSE, `${source}: neither PEM nor DER`, { subject: source });
    }
    return [new Crl(Buffer.from(data), source)];
  }

  /** PEM with the label OpenSSL and Node expect; `BEGIN CRL` (what @peculiar/x509 writes) is rejected by OpenSSL. */
  get pem(): string {
    return encodePem('X509 CRL', this.der);
  }

  get issuer(): string {
    return this.x509.issuer;
  }

  get thisUpdate(): Date {
    return this.x509.thisUpdate;
  }

  get nextUpdate(): Date | null {
    return this.x509.nextUpdate ?? null;
  }

  get version(): number {
    return (this.x509.version ?? 0) + 1;
  }

  get signatureAlgorithm(): string {
    return signatureAlgorithmName(this.#signatureOid);
  }

  /** The entry for a serial (any accepted hex form), or null when the serial is not revoked by this CRL. */
  lookup(serial: string): CrlEntry | null {
    return this.#bySerial.get(normalizeSerial(serial)) ?? null;
  }

  /** thisUpdate ≤ at ≤ nextUpdate; a CRL without nextUpdate is current from thisUpdate on. */
  isCurrentAt(at: Date): boolean {
    const t = at.getTime();
    return t >= this.thisUpdate.getTime() && (this.nextUpdate === null || t <= this.nextUpdate.getTime());
  }

  /** True when `issuerCert`'s key made the CRL signature (with an algorithm signature-algorithms.ts accepts). */
  verifySignature(issuerCert: Certificate): boolean {
    return verifySignature(this.#signatureOid, this.#tbs, this.#signature, issuerCert.publicKey);
  }

  /** True when the CRL names `cert` as its issuer (by bytes) and `cert`'s key signed it. */
  isIssuedBy(cert: Certificate): boolean {
    return this.issuerDer.equals(cert.subjectDer) && this.verifySignature(cert);
  }

  /** Throws CRL_SIGNATURE, naming the source and the expected issuer, unless `isIssuedBy(cert)`. */
  assertIssuedBy(cert: Certificate): void {
    if (!this.issuerDer.equals(cert.subjectDer)) {
      throw new MeshError(ErrorCodes.CRL_SIGNATURE, `${this.source}: CRL issuer "${this.issuer}" is not "${cert.subject}"`, { subject: this.source });
    }
    if (!this.verifySignature(cert)) {
      throw new MeshError(ErrorCodes.CRL_SIGNATURE, `${this.source}: CRL ${this.signatureAlgorithm} signature does not verify with the key of "${cert.subject}"`, {
        subject: this.source,
      });
    }
  }
}
