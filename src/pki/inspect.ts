import { Certificate } from './certificate.js';
import { Csr } from './csr.js';
import { Crl } from './crl.js';
import { OcspRequest, describeCertId } from './ocsp-request.js';
import { OcspResponse } from './ocsp-response.js';
import { formatSan, sanSetToList } from './general-names.js';
import { decodePem, looksLikePem } from './pem.js';
import { opensslSerial } from './serial.js';
import { ErrorCodes, MeshError } from '../core/index.js';

/** A plain description of one object, for `--json` and for the text view. */
export interface Described {
  kind: 'certificate' | 'csr' | 'crl' | 'ocsp-request' | 'ocsp-response';
  fields: Record<string, unknown>;
}

/** How to recognise and describe one kind of object. */
interface ObjectReader {
  kind: Described['kind'];
  pemLabels: string[];
  /** Parses DER of this kind or throws. */
  describe(der: Buffer, source: string): Described;
}


export function describeCertificate(cert: Certificate, at = new Date()): Described {
  const bc = cert.basicConstraints;
  const key = cert.key;
  const state = at < cert.notBefore ? 'not yet valid' : at > cert.notAfter ? 'expired' : 'valid';
  return {
    kind: 'certificate',
    fields: {
      subject: cert.subject || '(empty)',
      issuer: cert.issuer,
      serial: opensslSerial(cert.serial),
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      validity: state,
      spiffeIds: cert.spiffeIds,
      sans: sanSetToList(cert.sans).map(formatSan),
      publicKey: key.name,
      signatureAlgorithm: cert.signatureAlgorithm,
      ca: bc ? bc.ca : false,
      pathLen: bc?.pathLen ?? null,
      keyUsage: cert.keyUsage,
      extKeyUsage: cert.extKeyUsageNames,
      subjectKeyId: cert.subjectKeyId,
      authorityKeyId: cert.authorityKeyId,
      crlDistributionPoints: cert.crlDistributionPoints,
      ocspUrls: cert.ocspUrls,
      caIssuers: cert.caIssuersUrls,
      mustStaple: cert.mustStaple,
      ocspNoCheck: cert.ocspNoCheck,
      nameConstraints: cert.nameConstraints,
      selfSigned: cert.isSelfIssued && cert.verifySignature(cert.publicKey),
      sha256Fingerprint: cert.fingerprint256,
    },
  };
}

export function describeCsr(csr: Csr): Described {
  return {
    kind: 'csr',
    fields: {
      subject: csr.subject,
      publicKey: csr.key.name,
      signatureAlgorithm: csr.signatureAlgorithm,
      signatureValid: csr.verify(),
      requestedSans: sanSetToList(csr.requestedSans).map(formatSan),
      requestedExtensions: csr.requestedExtensionOids,
    },
  };
}

export function describeCrl(crl: Crl): Described {
  return {
    kind: 'crl',
    fields: {
      issuer: crl.issuer,
      crlNumber: crl.crlNumber,
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      authorityKeyId: crl.authorityKeyId,
      signatureAlgorithm: crl.signatureAlgorithm,
      revokedCount: crl.entries.length,
      revoked: crl.entries.map((e) => ({
        serial: opensslSerial(e.serial),
        revokedAt: e.revokedAt,
        reason: e.reason,
        ...(e.invalidityDate ? { invalidityDate: e.invalidityDate } : {}),
      })),
    },
  };
}

export function describeOcspRequest(req: OcspRequest): Described {
  return {
    kind: 'ocsp-request',
    fields: {
      requests: req.certIds.map((c) => ({ serial: opensslSerial(c.serial), hashAlgorithm: c.hashAlgorithm, certId: describeCertId(c) })),
      nonce: req.nonce ? req.nonce.toString('hex') : null,
      signed: req.signed,
    },
  };
}

export function describeOcspResponse(resp: OcspResponse): Described {
  const id = resp.responderId;
  return {
    kind: 'ocsp-response',
    fields: {
      responseStatus: resp.responseStatus,
      producedAt: resp.producedAt,
      responderId: id ? (id.type === 'name' ? `name: ${id.name}` : `key hash: ${id.keyHash.toString('hex')}`) : null,
      certificates: resp.certificates.map((c) => c.subject),
      responses: resp.responses.map((r) => ({
        serial: opensslSerial(r.certId.serial),
        hashAlgorithm: r.certId.hashAlgorithm,
        status: r.status,
        ...(r.revokedAt ? { revokedAt: r.revokedAt, reason: r.revocationReason } : {}),
        thisUpdate: r.thisUpdate,
        nextUpdate: r.nextUpdate,
      })),
      nonce: resp.nonce ? resp.nonce.toString('hex') : null,
    },
  };
}

// Order matters for DER: a certificate and a CRL are both SEQUENCE { tbs, alg, sig }, but their parsers reject each other.
const READERS: ObjectReader[] = [
  { kind: 'certificate', pemLabels: ['CERTIFICATE', 'TRUSTED CERTIFICATE'], describe: (der, s) => describeCertificate(Certificate.fromDer(der, s)) },
  { kind: 'csr', pemLabels: ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'], describe: (der, s) => describeCsr(Csr.parse(der, s)) },
  { kind: 'crl', pemLabels: ['X509 CRL', 'CRL'], describe: (der, s) => describeCrl(Crl.fromDer(der, s)) },
  { kind: 'ocsp-response', pemLabels: ['OCSP RESPONSE'], describe: (der, s) => describeOcspResponse(OcspResponse.parse(der, s)) },
  { kind: 'ocsp-request', pemLabels: ['OCSP REQUEST'], describe: (der, s) => describeOcspRequest(OcspRequest.parse(der, s)) },
];


/**
 * Reads any certificate, bundle, CSR, CRL, OCSP request or response, PEM or DER, recognised by its content
 * (never by file name). DER is tried against each kind in turn; the first that parses wins.
 */
export function inspectData(data: Uint8Array, source = 'input'): Described[] {
  if (looksLikePem(data)) {
    const blocks = decodePem(Buffer.from(data).toString('utf8'), source);
    return blocks.map((b, i) => {
      const reader = READERS.find((r) => r.pemLabels.includes(b.label));
      if (!reader) throw new MeshError(ErrorCodes.UNKNOWN_FORMAT, `${source}: PEM block ${i + 1} "${b.label}" is not something meshcert reads`, { subject: source });
      return reader.describe(b.der, blocks.length > 1 ? `${source} (block ${i + 1})` : source);
    });
  }
  const der = Buffer.from(data);
  for (const reader of READERS) {
    try {
      return [reader.describe(der, source)];
    } catch {
      /* try the next kind */
    }
  }
  throw new MeshError(
    ErrorCodes.UNKNOWN_FORMAT,
    `${source}: not a certificate, CSR, CRL or OCSP request/response (neither PEM nor DER of a known kind)`,
    { subject: source },
  );
}

const LABELS: Record<string, string> = {
  sha256Fingerprint: 'SHA-256 fingerprint',
  spiffeIds: 'SPIFFE ID',
  sans: 'SANs',
  extKeyUsage: 'Extended key usage',
  keyUsage: 'Key usage',
  ocspUrls: 'OCSP',
  crlDistributionPoints: 'CRL distribution points',
  ca: 'CA',
  pathLen: 'Path length',
  caIssuers: 'CA issuers',
  ocspNoCheck: 'OCSP no-check',
};

function label(key: string): string {
  return LABELS[key] ?? key.replace(/([A-Z])/g, ' $1').replace(/^./, (c) => c.toUpperCase());
}

function valueText(v: unknown, indent: string): string | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) {
    if (v.length === 0) return null;
    if (v.every((x) => typeof x !== 'object' || x instanceof Date)) return v.map((x) => (x instanceof Date ? x.toISOString() : String(x))).join(', ');
    return `\n${v.map((x) => `${indent}  - ${typeof x === 'object' ? formatFields(x as Record<string, unknown>, `${indent}    `).trimStart() : String(x)}`).join('\n')}`;
  }
  if (typeof v === 'object') return `\n${formatFields(v as Record<string, unknown>, `${indent}  `)}`;
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return String(v);
}

function formatFields(fields: Record<string, unknown>, indent = '  '): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    const text = valueText(v, indent);
    if (text === null || text === '') continue;
    if (typeof v === 'boolean' && !v && !['ca', 'signatureValid', 'selfSigned'].includes(k)) continue;
    lines.push(`${indent}${label(k)}:${text.startsWith('\n') ? '' : ' '}${text}`);
  }
  return lines.join('\n');
}

const TITLES: Record<Described['kind'], string> = {
  certificate: 'Certificate',
  csr: 'Certificate request',
  crl: 'CRL',
  'ocsp-request': 'OCSP request',
  'ocsp-response': 'OCSP response',
};

/** A short text view, like `openssl x509 -text` without the hex dumps, with SPIFFE IDs up front. */
export function formatInspection(items: Described[]): string {
  return items
    .map((d, i) => `${TITLES[d.kind]}${items.length > 1 ? ` ${i + 1} of ${items.length}` : ''}:\n${formatFields(d.fields)}`)
    .join('\n\n');
}
