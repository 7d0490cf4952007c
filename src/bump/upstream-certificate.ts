import type { X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import { ErrorCodes, MeshError } from '../core/index.js';
import { children, ipAddressOctets, parseDer, rawBytes, type KeyType, type San } from '../pki/index.js';

/** What a mimic copies from the upstream's leaf certificate. */
export interface UpstreamCertificateInfo {
  /** SHA-256 fingerprint as Node prints it (AA:BB:…), the mimic cache key with the SNI. */
  fingerprint: string;
  /** Subject attributes in order (type as short name or dotted OID, value). */
  subject: Array<[string, string]>;
  /** The SAN list, when every name is one the builder writes (DNS, IP, URI, email). */
  sans: San[];
  /** The SAN extension's value as DER when it holds other names (directoryName, otherName…): copied verbatim. */
  rawSan: Buffer | null;
  notBefore: Date;
  notAfter: Date;
  /** The mimic's key type: same algorithm, same size class. */
  keyType: KeyType;
}

const OID_SAN = '2.5.29.17';

/** RFC 4514 escapes as OpenSSL writes them with ASN1_STRFLGS_ESC_2253 (\, and \XX hex). */
function unescape2253(value: string): string {
  if (!value.includes('\\')) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && i + 1 < value.length) {
      const hex = value.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else {
        bytes.push(...Buffer.from(value[i + 1]!, 'utf8'));
        i += 1;
      }
    } else bytes.push(...Buffer.from(c, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * Node's `subject` text: one attribute per line, "SN=value" (OpenSSL short names, or a dotted OID), multi-valued RDN
 * parts joined by " + ", special characters escaped as in RFC 4514. A multi-valued RDN is flattened into one RDN per
 * attribute, in order.
 */
function subjectFromText(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (!text) return out;
  for (const line of text.split('\n')) {
    // An escaped "+" is "\+", so " + " separates the parts of a multi-valued RDN.
    for (const part of line.split(' + ')) {
      const eq = part.indexOf('=');
      if (eq <= 0) continue;
      const type = part.slice(0, eq);
      out.push([OPENSSL_SHORT_NAMES[type] ?? type, unescape2253(part.slice(eq + 1))]);
    }
  }
  return out;
}

/** OpenSSL short names to the names (or OIDs) the certificate builders take. */
const OPENSSL_SHORT_NAMES: Record<string, string> = {
  CN: 'CN',
  C: 'C',
  O: 'O',
  OU: 'OU',
  L: 'L',
  ST: 'ST',
  emailAddress: 'E',
  DC: 'DC',
  SN: 'SN',
  GN: 'G',
  title: 'T',
  serialNumber: '2.5.4.5',
  street: '2.5.4.9',
  postalCode: '2.5.4.17',
  businessCategory: '2.5.4.15',
  jurisdictionC: '1.3.6.1.4.1.311.60.2.1.3',
  jurisdictionST: '1.3.6.1.4.1.311.60.2.1.2',
  jurisdictionL: '1.3.6.1.4.1.311.60.2.1.1',
  UID: '0.9.2342.19200300.100.1.1',
};

/**
 * Node's `subjectAltName` text ("DNS:a, DNS:b, IP Address:10.0.0.1, URI:…, email:…"); values with a comma or quote
 * come JSON-quoted. Returns null when a name is of a kind the builder does not write (then the DER is copied).
 */
function sansFromText(text: string | undefined): San[] | null {
  if (!text) return [];
  const out: San[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) return null;
    const label = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // JSON string up to the closing quote that is followed by ", " or the end.
      let j = colon + 2;
      while (j < text.length && !(text[j] === '"' && text[j - 1] !== '\\')) j++;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        return null;
      }
      next = j + 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      next = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, next);
    }
    if (label === 'DNS') out.push({ type: 'dns', value });
    else if (label === 'IP Address') out.push({ type: 'ip', value: value.replace(/^\[|\]$/g, '') });
    else if (label === 'URI') out.push({ type: 'uri', value });
    else if (label === 'email') out.push({ type: 'email', value });
    else return null;
    i = next;
    if (text.startsWith(', ', i)) i += 2;
    else if (i < text.length) return null;
  }
  return out;
}

/** The SAN extension value (a GeneralNames SEQUENCE) from the DER, for names Node prints in a form we cannot re-encode. */
function rawSanFromDer(der: Buffer, source: string): Buffer | null {
  const top = children(parseDer(der, source, ErrorCodes.CERT_PARSE));
  const tbs = top[0] ? children(top[0]) : [];
  for (const el of tbs) {
    const id = (el as unknown as { idBlock: { tagClass: number; tagNumber: number } }).idBlock;
    if (id.tagClass !== 3 || id.tagNumber !== 3) continue;
    for (const ext of children(children(el)[0]!)) {
      const parts = children(ext);
      const oid = parts[0] instanceof asn1js.ObjectIdentifier ? parts[0].valueBlock.toString() : '';
      if (oid !== OID_SAN) continue;
      const value = parts[parts.length - 1];
      if (value instanceof asn1js.OctetString) return Buffer.from(value.valueBlock.valueHexView);
      return rawBytes(value!);
    }
  }
  return null;
}

function keyTypeOf(cert: X509Certificate, source: string): KeyType {
  const key = cert.publicKey;
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      // P-521 has no pool of its own: the mimic takes the next size class down that clients all accept.
      return d.namedCurve === 'prime256v1' ? 'ec-p256' : 'ec-p384';
    case 'rsa': {
      const bits = d.modulusLength ?? 2048;
      return bits <= 2048 ? 'rsa-2048' : bits <= 3072 ? 'rsa-3072' : 'rsa-4096';
    }
    case 'ed25519':
      return 'ed25519';
    default:
      throw new MeshError(ErrorCodes.BUMP_UPSTREAM_CERTIFICATE, `${source}: upstream certificate key type ${key.asymmetricKeyType ?? 'unknown'} cannot be mimicked`, {
        subject: source,
      });
  }
}

/** Reads what the mimic copies, from the certificate the upstream presented (already parsed by the TLS stack). */
export function readUpstreamCertificate(cert: X509Certificate, source = 'upstream certificate'): UpstreamCertificateInfo {
  let sans = sansFromText(cert.subjectAltName);
  let rawSan: Buffer | null = null;
  if (sans === null) {
    rawSan = rawSanFromDer(cert.raw, source);
    sans = [];
  } else {
    // Normalize what the builder would refuse (e.g. an IPv6 written with a zone) by copying the DER instead.
    try {
      for (const s of sans) if (s.type === 'ip') ipAddressOctets(s.value);
    } catch {
      rawSan = rawSanFromDer(cert.raw, source);
      sans = [];
    }
  }
  return {
    fingerprint: cert.fingerprint256,
    subject: subjectFromText(cert.subject),
    sans,
    rawSan,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    keyType: keyTypeOf(cert, source),
  };
}

/** True when the certificate names its host in a SAN (the mimic needs one; CN-only certificates are refused). */
export function hasSubjectAltName(info: UpstreamCertificateInfo): boolean {
  return info.sans.length > 0 || info.rawSan !== null;
}
