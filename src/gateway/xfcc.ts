import { createHash } from 'node:crypto';
import type { Certificate } from '../pki/index.js';

/**
 * Envoy's `x-forwarded-client-cert` header as Istio's gateways send it (forward_client_cert_details SANITIZE_SET
 * with Subject, URI and DNS): `By=<gateway URI SAN>;Hash=<sha256 of the leaf DER, lowercase hex>;
 * Subject="<RFC 2253 subject>";URI=<each URI SAN>;DNS=<each DNS SAN>`, in that order. `URI=` is present even when
 * the certificate has none, and `Subject=""` even when the subject is empty, as in Envoy.
 */
export const XFCC_HEADER = 'x-forwarded-client-cert';

export function xfccValue(leaf: Certificate, localUriSans: readonly string[] = []): string {
  const parts: string[] = [];
  for (const uri of localUriSans) parts.push(`By=${uri}`);
  parts.push(`Hash=${createHash('sha256').update(leaf.der).digest('hex')}`);
  parts.push(`Subject="${rfc2253Subject(leaf)}"`);
  const sans = leaf.sans;
  if (sans.uri.length === 0) parts.push('URI=');
  for (const uri of sans.uri) parts.push(`URI=${uri}`);
  for (const dns of sans.dns) parts.push(`DNS=${dns}`);
  return parts.join(';');
}

/** OpenSSL's short names (what `-nameopt RFC2253` and Envoy print) for the names @peculiar/x509 uses. */
const SHORT_NAMES: Record<string, string> = {
  E: 'emailAddress',
  G: 'GN',
  I: 'initials',
  T: 'title',
  '2.5.4.5': 'serialNumber',
  '2.5.4.9': 'street',
  '0.9.2342.19200300.100.1.1': 'UID',
  '2.5.4.17': 'postalCode',
};

/** The subject as OpenSSL prints it with XN_FLAG_RFC2253: last RDN first, `,` between RDNs, `+` inside one. */
export function rfc2253Subject(cert: Certificate): string {
  const rdns = cert.subjectName.toJSON();
  const out: string[] = [];
  for (let i = rdns.length - 1; i >= 0; i--) {
    const rdn = rdns[i]!;
    const avas: string[] = [];
    for (const [type, values] of Object.entries(rdn)) {
      const name = SHORT_NAMES[type] ?? type;
      for (const v of values) avas.push(`${name}=${escapeRfc2253(v)}`);
    }
    out.push(avas.join('+'));
  }
  return out.join(',');
}

function hexByte(b: number): string {
  return '\\' + b.toString(16).toUpperCase().padStart(2, '0');
}

/** RFC 2253 escaping as OpenSSL does it (ESC_2253 | ESC_CTRL | ESC_MSB): specials backslashed, others as \XX. */
function escapeRfc2253(value: string): string {
  const bytes = Buffer.from(value, 'utf8');
  let s = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    const c = String.fromCharCode(b);
    if (b > 0x7e || b < 0x20) s += hexByte(b);
    else if (',+"\\<>;'.includes(c)) s += '\\' + c;
    else if ((i === 0 && (c === '#' || c === ' ')) || (i === bytes.length - 1 && c === ' ')) s += '\\' + c;
    else s += c;
  }
  return s;
}
