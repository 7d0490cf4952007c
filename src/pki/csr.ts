import { createPublicKey, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';
import './crypto-provider.js';
import { children, parseDer, rawBytes } from './der.js';
import { emptySanSet, type San, type SanSet } from './general-names.js';
import { assertKeyStrength, describeKey, type KeyDescription, type SigningKey } from './keys.js';
import { OID, ekuOid } from './oids.js';
import { decodePem, encodePem, looksLikePem } from './pem.js';
import { signatureAlgorithmName, verifySignature } from './signature-algorithms.js';

/** One extension of a CSR's extensionRequest attribute (PKCS#9), as requested. */
export interface CsrExtension {
  oid: string;
  critical: boolean;
  /** The extnValue contents (DER of the extension's own structure). */
  value: Buffer;
}

const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

export interface CsrSpec {
  subject?: string;
  sans?: San[];
  extKeyUsage?: string[];
  mustStaple?: boolean;
}

/**
 * A parsed PKCS#10 certificate signing request. Parsing reads the structure; `verify()` checks the signature
 * with node:crypto over the CertificationRequestInfo bytes as encoded (no re-encoding, no WebCrypto round trip).
 */
export class Csr {
  readonly der: Buffer;
  readonly source: string;
  readonly #info: Buffer;
  readonly #sigOid: string;
  readonly #signature: Buffer;
  readonly #spki: Buffer;
  readonly #spkiElement: asn1js.AsnType;
  readonly #attributes: asn1js.AsnType | undefined;
  #requested: CsrExtension[] | undefined;
  #x509: x509.Pkcs10CertificateRequest | undefined;
  #publicKey: KeyObject | undefined;

  private constructor(der: Buffer, source: string) {
    this.der = der;
    this.source = source;
    const root = parseDer(der, source, ErrorCodes.CSR_PARSE);
    const [info, alg, sig] = children(root);
    const infoParts = info ? children(info) : [];
    const algOid = alg ? children(alg)[0] : undefined;
    if (!info || !(algOid instanceof asn1js.ObjectIdentifier) || !(sig instanceof asn1js.BitString) || infoParts.length < 3) {
      throw new MeshError(ErrorCodes.CSR_PARSE, `${source}: not a PKCS#10 certificate request (wrong structure)`, { subject: source });
    }
    this.#info = rawBytes(info);
    this.#sigOid = algOid.valueBlock.toString();
    this.#signature = Buffer.from(sig.valueBlock.valueHexView);
    this.#spki = rawBytes(infoParts[2]!);
    this.#spkiElement = infoParts[2]!;
    this.#attributes = infoParts[3];
  }

  static parse(data: string | Uint8Array, source = 'CSR'): Csr {
    if (looksLikePem(data)) {
      const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
      const block = decodePem(text, source).find((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
      if (!block) throw new MeshError(ErrorCodes.PEM, `${source}: no CERTIFICATE REQUEST block`, { subject: source });
      return new Csr(block.der, source);
    }
    if (typeof data === 'string') throw new MeshError(ErrorCodes.CSR_PARSE, `${source}: neither PEM nor DER`, { subject: source });
    return new Csr(Buffer.from(data), source);
  }

  /** Parses and checks the signature and key strength; what a CA does with every CSR it receives. */
  static parseVerified(data: string | Uint8Array, source = 'CSR'): Csr {
    const csr = Csr.parse(data, source);
    csr.assertValid();
    return csr;
  }

  get pem(): string {
    return encodePem('CERTIFICATE REQUEST', this.der);
  }

  get x509(): x509.Pkcs10CertificateRequest {
    if (!this.#x509) {
      try {
        this.#x509 = new x509.Pkcs10CertificateRequest(this.der);
      } catch (err) {
        throw new MeshError(ErrorCodes.CSR_PARSE, `${this.source}: unreadable CSR: ${describeError(err)}`, { subject: this.source });
      }
    }
    return this.#x509;
  }

  get publicKey(): KeyObject {
    if (!this.#publicKey) {
      try {
        this.#publicKey = ecPublicKeyFromJwk(this.#spkiElement) ?? createPublicKey({ key: this.#spki, format: 'der', type: 'spki' });
      } catch (err) {
        throw new MeshError(ErrorCodes.CSR_PARSE, `${this.source}: unreadable public key: ${describeError(err)}`, { subject: this.source });
      }
    }
    return this.#publicKey;
  }

  get spkiDer(): Buffer {
    return this.#spki;
  }

  get key(): KeyDescription {
    return describeKey(this.publicKey, `${this.source} public key`);
  }

  get subject(): string {
    return this.x509.subject;
  }

  get signatureAlgorithm(): string {
    return signatureAlgorithmName(this.#sigOid);
  }

  /** The extensions requested through the extensionRequest attribute. */
  get extensions(): x509.Extension[] {
    return this.x509.extensions;
  }

  get requestedSans(): SanSet {
    const set = emptySanSet();
    // getExtension(SubjectAlternativeNameExtension) returns null on CSRs in @peculiar/x509 2.2: look up by OID.
    const ext = this.x509.getExtension(OID.subjectAltName) as x509.Extension | null;
    if (!ext) return set;
    const san = ext instanceof x509.SubjectAlternativeNameExtension ? ext : new x509.SubjectAlternativeNameExtension(ext.rawData);
    for (const n of san.names.items) {
      if (n.type === 'dns') set.dns.push(n.value);
      else if (n.type === 'ip') set.ip.push(n.value);
      else if (n.type === 'url') set.uri.push(n.value);
      else if (n.type === 'email') set.email.push(n.value);
    }
    return set;
  }

  get requestedExtensionOids(): string[] {
    return this.extensions.map((e) => e.type);
  }

  /**
   * The requested extensions, read with asn1js from the attributes the signature covers, without building the
   * generic object model (which costs more than parsing and verifying the CSR on the issuance hot path).
   * Malformed attributes are a CSR_PARSE error.
   */
  get requestedExtensions(): CsrExtension[] {
    if (this.#requested) return this.#requested;
    const bad = (why: string) => new MeshError(ErrorCodes.CSR_PARSE, `${this.source}: malformed requested extensions: ${why}`, { subject: this.source });
    const found: CsrExtension[] = [];
    let seenRequest = false;
    for (const attr of this.#attributes ? children(this.#attributes) : []) {
      const [type, values] = children(attr);
      if (!(type instanceof asn1js.ObjectIdentifier) || !(values instanceof asn1js.Set)) throw bad('an attribute is not { type, values }');
      if (type.valueBlock.toString() !== EXTENSION_REQUEST) continue;
      const vs = children(values);
      if (seenRequest || vs.length !== 1 || !(vs[0] instanceof asn1js.Sequence)) throw bad('extensionRequest must appear once, with one value');
      seenRequest = true;
      for (const ext of children(vs[0])) {
        const parts = children(ext);
        const oid = parts[0];
        const value = parts[parts.length - 1];
        const crit = parts.length === 3 ? parts[1] : undefined;
        if (!(ext instanceof asn1js.Sequence) || !(oid instanceof asn1js.ObjectIdentifier) || !(value instanceof asn1js.OctetString) || parts.length < 2 || parts.length > 3 || (crit !== undefined && !(crit instanceof asn1js.Boolean))) {
          throw bad('an extension is not { extnID, critical?, extnValue }');
        }
        found.push({ oid: oid.valueBlock.toString(), critical: crit instanceof asn1js.Boolean && crit.valueBlock.value, value: Buffer.from(value.valueBlock.valueHexView) });
      }
    }
    return (this.#requested = found);
  }

  /** True when the signature verifies with the CSR's own key (proof of possession). */
  verify(): boolean {
    return verifySignature(this.#sigOid, this.#info, this.#signature, this.publicKey);
  }

  /** Throws CSR_SIGNATURE for a bad signature, KEY_TOO_WEAK / KEY_TYPE for a key we will not certify. */
  assertValid(): void {
    assertKeyStrength(this.publicKey, `${this.source} public key`);
    if (!this.verify()) {
      throw new MeshError(
        ErrorCodes.CSR_SIGNATURE,
        `${this.source}: the CSR signature (${this.signatureAlgorithm}) does not verify with its public key`,
        { subject: this.source },
      );
    }
  }
}

const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const JWK_CURVES: Record<string, { crv: string; size: number }> = {
  '1.2.840.10045.3.1.7': { crv: 'P-256', size: 32 },
  '1.3.132.0.34': { crv: 'P-384', size: 48 },
};

/**
 * An uncompressed EC point imported as a JWK: OpenSSL 3's DER decoder costs ~3× more than its JWK path (measured
 * here: ~170 µs against ~56 µs for P-256), and this runs once per CSR on the issuance hot path. Anything else
 * (RSA, compressed points, other curves) returns null and takes the DER path.
 */
function ecPublicKeyFromJwk(spki: asn1js.AsnType): KeyObject | null {
  const [alg, bits] = children(spki);
  const [algOid, curveOid] = alg ? children(alg) : [];
  if (!(algOid instanceof asn1js.ObjectIdentifier) || algOid.valueBlock.toString() !== EC_PUBLIC_KEY) return null;
  if (!(curveOid instanceof asn1js.ObjectIdentifier) || !(bits instanceof asn1js.BitString)) return null;
  const curve = JWK_CURVES[curveOid.valueBlock.toString()];
  const point = bits.valueBlock.valueHexView;
  if (!curve || point.length !== 1 + 2 * curve.size || point[0] !== 0x04) return null;
  const b64 = (from: number) => Buffer.from(point.buffer, point.byteOffset + from, curve.size).toString('base64url');
  try {
    return createPublicKey({ key: { kty: 'EC', crv: curve.crv, x: b64(1), y: b64(1 + curve.size) }, format: 'jwk' });
  } catch {
    return null; // not on the curve: let the DER path report it
  }
}

/** Makes a CSR signed by `key` (what an agent does; also for tests and `meshcert cert issue --csr`). */
export async function buildCsr(spec: CsrSpec, key: SigningKey): Promise<Csr> {
  const extensions: x509.Extension[] = [];
  if (spec.sans?.length) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        spec.sans.map((s) => ({ type: s.type === 'uri' ? 'url' : s.type, value: s.value }) as x509.JsonGeneralName),
        false,
      ),
    );
  }
  if (spec.extKeyUsage?.length) extensions.push(new x509.ExtendedKeyUsageExtension(spec.extKeyUsage.map(ekuOid), false));
  if (spec.mustStaple) {
    extensions.push(new x509.Extension(OID.tlsFeature, false, new asn1js.Sequence({ value: [new asn1js.Integer({ value: 5 })] }).toBER()));
  }
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: spec.subject ?? '',
    keys: { privateKey: key.cryptoKey, publicKey: key.publicCryptoKey },
    signingAlgorithm: key.scheme.webcrypto,
    extensions,
  });
  return Csr.parse(new Uint8Array(csr.rawData), 'CSR');
}
