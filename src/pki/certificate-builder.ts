import { createHash } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  GeneralName as AsnGeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  NameConstraints as AsnNameConstraints,
  Name as AsnName,
} from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { ErrorCodes, MeshError, describeError, wholeSeconds } from '../core/index.js';
import { Certificate } from './certificate.js';
import type { CertificateSpec, Issuer } from './certificate-spec.js';
import './crypto-provider.js';
import { checkSan } from './general-names.js';
import { spkiDer, toPublicCryptoKey, type SigningKey } from './keys.js';
import { OID, ekuOid, keyUsageFlags } from './oids.js';
import { serialToDerHex } from './serial.js';

/** Turns a spec into a signed certificate. Implementations: generic (@peculiar/x509) now, a DER template later. */
export interface CertificateBuilder {
  readonly name: string;
  build(spec: CertificateSpec, issuer: Issuer | 'self', signer: SigningKey): Promise<Buffer>;
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1), the key id OpenSSL also computes. */
export function keyIdentifier(publicKeySpkiDer: Uint8Array): string {
  const spki = asn1js.fromBER(new Uint8Array(publicKeySpkiDer));
  const bits = (spki.result as asn1js.Sequence).valueBlock.value[1] as asn1js.BitString;
  return createHash('sha1').update(bits.valueBlock.valueHexView).digest('hex');
}

function subjectName(subject: CertificateSpec['subject']): x509.Name {
  try {
    if (typeof subject === 'string') return new x509.Name(subject);
    return new x509.Name(subject.map(([k, v]) => ({ [k]: [v] })));
  } catch (err) {
    throw new MeshError(ErrorCodes.NAME, `subject "${JSON.stringify(subject)}" is not a valid distinguished name: ${describeError(err)}`, {
      subject: 'subject',
    });
  }
}

function asnGeneralName(type: 'dns' | 'ip' | 'uri' | 'email', value: string): AsnGeneralName {
  switch (type) {
    case 'dns':
      return new AsnGeneralName({ dNSName: value });
    case 'ip':
      return new AsnGeneralName({ iPAddress: value });
    case 'uri':
      return new AsnGeneralName({ uniformResourceIdentifier: value });
    case 'email':
      return new AsnGeneralName({ rfc822Name: value });
  }
}

function subtrees(spec: Partial<Record<'dns' | 'ip' | 'uri' | 'email', string[]>> | undefined): GeneralSubtrees | undefined {
  if (!spec) return undefined;
  const items = (['dns', 'ip', 'uri', 'email'] as const).flatMap((t) => (spec[t] ?? []).map((v) => new GeneralSubtree({ base: asnGeneralName(t, v) })));
  return items.length ? new GeneralSubtrees(items) : undefined;
}

/** The extensions a spec asks for, in the order OpenSSL writes them. */
export function specExtensions(spec: CertificateSpec, issuerKeyId: string): x509.Extension[] {
  const ext: x509.Extension[] = [];
  const bc = spec.basicConstraints;
  if (bc) {
    ext.push(new x509.BasicConstraintsExtension(bc.ca, bc.ca && bc.pathLen != null ? bc.pathLen : undefined, bc.critical ?? true));
  }
  if (spec.keyUsage?.length) ext.push(new x509.KeyUsagesExtension(keyUsageFlags(spec.keyUsage), true));
  if (spec.extKeyUsage?.length) ext.push(new x509.ExtendedKeyUsageExtension(spec.extKeyUsage.map(ekuOid), false));
  const ski = keyIdentifier(spkiDer(spec.publicKey));
  ext.push(new x509.SubjectKeyIdentifierExtension(ski, false));
  ext.push(new x509.AuthorityKeyIdentifierExtension(issuerKeyId, false));
  if (spec.sans?.length) {
    const names = spec.sans.map((s, i) => {
      const c = checkSan(s, `sans[${i}]`);
      return { type: c.type === 'uri' ? 'url' : c.type, value: c.value } as x509.JsonGeneralName;
    });
    ext.push(new x509.SubjectAlternativeNameExtension(names, spec.sanCritical ?? false));
  }
  if (spec.crlDistributionPoints?.length) ext.push(new x509.CRLDistributionPointsExtension(spec.crlDistributionPoints, false));
  if (spec.ocspUrls?.length || spec.caIssuersUrls?.length) {
    ext.push(new x509.AuthorityInfoAccessExtension({ ocsp: spec.ocspUrls ?? [], caIssuers: spec.caIssuersUrls ?? [] }, false));
  }
  if (spec.nameConstraints) {
    const nc = new AsnNameConstraints({
      permittedSubtrees: subtrees(spec.nameConstraints.permitted),
      excludedSubtrees: subtrees(spec.nameConstraints.excluded),
    });
    ext.push(new x509.Extension(OID.nameConstraints, true, AsnConvert.serialize(nc)));
  }
  if (spec.mustStaple) {
    // TLSFeature ::= SEQUENCE OF INTEGER; 5 = status_request (RFC 7633).
    const der = new asn1js.Sequence({ value: [new asn1js.Integer({ value: 5 })] }).toBER();
    ext.push(new x509.Extension(OID.tlsFeature, false, der));
  }
  if (spec.ocspNoCheck) ext.push(new x509.Extension(OID.ocspNoCheck, false, new asn1js.Null().toBER()));
  for (const e of spec.extraExtensions ?? []) ext.push(new x509.Extension(e.oid, e.critical, e.value));
  return ext;
}

/** The generic builder: @peculiar/x509's generator. Clear and complete; ~550 certificates/s. */
export class GenericCertificateBuilder implements CertificateBuilder {
  readonly name = 'generic';

  async build(spec: CertificateSpec, issuer: Issuer | 'self', signer: SigningKey): Promise<Buffer> {
    const subject = subjectName(spec.subject);
    const selfKeyId = keyIdentifier(spkiDer(spec.publicKey));
    const issuerKeyId = issuer === 'self' ? selfKeyId : issuer.keyId;
    const issuerName = issuer === 'self' ? subject : new x509.Name(AsnConvert.parse(issuer.subjectDer, AsnName));
    try {
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serialToDerHex(spec.serial),
        subject,
        issuer: issuerName,
        notBefore: wholeSeconds(spec.notBefore),
        notAfter: wholeSeconds(spec.notAfter),
        signingAlgorithm: signer.scheme.webcrypto,
        publicKey: await toPublicCryptoKey(spec.publicKey),
        signingKey: signer.cryptoKey,
        extensions: specExtensions(spec, issuerKeyId),
      });
      return Buffer.from(cert.rawData);
    } catch (err) {
      if (err instanceof MeshError) throw err;
      throw new MeshError(ErrorCodes.CERT_BUILD, `cannot build certificate ${spec.serial}: ${describeError(err)}`, { cause: err });
    }
  }
}

export const genericCertificateBuilder = new GenericCertificateBuilder();

/** The Issuer view of a CA certificate. */
export function issuerOf(ca: Certificate): Issuer {
  return { subjectDer: ca.subjectDer, keyId: ca.issuerKeyId };
}
