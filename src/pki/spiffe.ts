import { ErrorCodes, MeshError } from '../core/index.js';
import type { Certificate } from './certificate.js';
import { EKU } from './oids.js';

/**
 * SPIFFE IDs and X509-SVID checks, modelled on go-spiffe: a SpiffeId or TrustDomain exists only by parsing (the
 * constructors are private), so holding one means it is valid. Failure reasons are named constants so that callers,
 * metrics and tests can branch on them instead of on message text.
 */

/** Why a text is not a SPIFFE ID (or trust domain). Stable values: part of the public interface. */
export const SpiffeIdError = {
  EMPTY: 'empty',
  TOO_LONG: 'tooLong',
  WRONG_SCHEME: 'wrongScheme',
  MISSING_TRUST_DOMAIN: 'missingTrustDomain',
  TRUST_DOMAIN_TOO_LONG: 'trustDomainTooLong',
  BAD_TRUST_DOMAIN_CHAR: 'badTrustDomainChar',
  HAS_USERINFO: 'hasUserinfo',
  HAS_PORT: 'hasPort',
  NO_LEADING_SLASH: 'noLeadingSlash',
  BAD_PATH_SEGMENT_CHAR: 'badPathSegmentChar',
  EMPTY_SEGMENT: 'emptySegment',
  DOT_SEGMENT: 'dotSegment',
  TRAILING_SLASH: 'trailingSlash',
  HAS_QUERY: 'hasQuery',
  HAS_FRAGMENT: 'hasFragment',
} as const;
export type SpiffeIdErrorReason = (typeof SpiffeIdError)[keyof typeof SpiffeIdError];

const REASON_TEXT: Record<SpiffeIdErrorReason, string> = {
  empty: 'cannot be empty',
  tooLong: 'is longer than the 2048 bytes a SPIFFE ID may have',
  wrongScheme: 'scheme is missing or invalid (a SPIFFE ID starts with "spiffe://", in lowercase)',
  missingTrustDomain: 'trust domain is missing',
  trustDomainTooLong: 'trust domain is longer than 255 characters',
  badTrustDomainChar: 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
  hasUserinfo: 'trust domain must not contain userinfo ("user@")',
  hasPort: 'trust domain must not contain a port (":")',
  noLeadingSlash: 'path must have a leading slash',
  badPathSegmentChar: 'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
  emptySegment: 'path cannot contain empty segments',
  dotSegment: 'path cannot contain dot segments',
  trailingSlash: 'path cannot have a trailing slash',
  hasQuery: 'a SPIFFE ID cannot have a query ("?")',
  hasFragment: 'a SPIFFE ID cannot have a fragment ("#")',
};

export const SPIFFE_ID_MAX_LENGTH = 2048;
export const TRUST_DOMAIN_MAX_LENGTH = 255;
const SCHEME_PREFIX = 'spiffe://';

export type SpiffeParseResult<T> = { ok: true; value: T } | { ok: false; reason: SpiffeIdErrorReason; message: string };

function isTrustDomainChar(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c === '.' || c === '-' || c === '_';
}

function isPathSegmentChar(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c === '.' || c === '-' || c === '_';
}

function fail<T>(reason: SpiffeIdErrorReason, detail?: string): SpiffeParseResult<T> {
  return { ok: false, reason, message: detail ? `${REASON_TEXT[reason]} (${detail})` : REASON_TEXT[reason] };
}

function checkTrustDomainName(name: string): SpiffeParseResult<string> {
  if (name === '') return fail(SpiffeIdError.MISSING_TRUST_DOMAIN);
  // Userinfo and port get their own reasons: they are the usual mistakes ("td:443", "user@td").
  if (name.includes('@')) return fail(SpiffeIdError.HAS_USERINFO);
  if (name.includes(':')) return fail(SpiffeIdError.HAS_PORT);
  for (const c of name) {
    if (!isTrustDomainChar(c)) {
      const hint = c >= 'A' && c <= 'Z' ? `uppercase "${c}"` : `"${c}"`;
      return fail(SpiffeIdError.BAD_TRUST_DOMAIN_CHAR, hint);
    }
  }
  if (name.length > TRUST_DOMAIN_MAX_LENGTH) return fail(SpiffeIdError.TRUST_DOMAIN_TOO_LONG);
  return { ok: true, value: name };
}

function checkSegment(seg: string, isLast: boolean): SpiffeParseResult<string> {
  if (seg === '') return fail(isLast ? SpiffeIdError.TRAILING_SLASH : SpiffeIdError.EMPTY_SEGMENT);
  if (seg === '.' || seg === '..') return fail(SpiffeIdError.DOT_SEGMENT, `"${seg}"`);
  for (const c of seg) {
    if (!isPathSegmentChar(c)) return fail(SpiffeIdError.BAD_PATH_SEGMENT_CHAR, `"${c}" in segment "${seg}"`);
  }
  return { ok: true, value: seg };
}

/** Checks a path as the SPIFFE ID spec defines it: "" or "/seg(/seg)*". */
function checkPath(path: string): SpiffeParseResult<string> {
  if (path === '') return { ok: true, value: '' };
  if (!path.startsWith('/')) return fail(SpiffeIdError.NO_LEADING_SLASH);
  // Query and fragment are named before segment characters: "?" would otherwise read as a bad character.
  const q = path.indexOf('?');
  const h = path.indexOf('#');
  if (q >= 0 && (h < 0 || q < h)) return fail(SpiffeIdError.HAS_QUERY);
  if (h >= 0) return fail(SpiffeIdError.HAS_FRAGMENT);
  const segs = path.slice(1).split('/');
  for (let i = 0; i < segs.length; i++) {
    const r = checkSegment(segs[i]!, i === segs.length - 1);
    if (!r.ok) return r;
  }
  return { ok: true, value: path };
}

function toError(text: string, reason: SpiffeIdErrorReason, message: string, field: string | undefined, what = 'SPIFFE ID'): MeshError {
  const shown = text.length > 120 ? `${text.slice(0, 117)}...` : text;
  const prefix = field ? `${field}: ` : '';
  return new MeshError(ErrorCodes.SPIFFE_ID, `${prefix}"${shown}" is not a valid ${what}: ${message}`, {
    subject: field ?? text,
    details: { reason, value: text },
  });
}

/** A SPIFFE trust domain name ("cluster.local"). Made only by TrustDomain.parse, so always valid. */
export class TrustDomain {
  private constructor(readonly name: string) {}

  /** Accepts a bare name ("example.org") or a SPIFFE ID ("spiffe://example.org/..."), as go-spiffe does. */
  static tryParse(text: string): SpiffeParseResult<TrustDomain> {
    if (text.includes(':/')) {
      const id = SpiffeId.tryParse(text);
      return id.ok ? { ok: true, value: id.value.domain } : id;
    }
    const r = checkTrustDomainName(text);
    return r.ok ? { ok: true, value: new TrustDomain(r.value) } : r;
  }

  static parse(text: string, field?: string): TrustDomain {
    const r = TrustDomain.tryParse(text);
    if (!r.ok) throw toError(text, r.reason, r.message, field, 'SPIFFE trust domain');
    return r.value;
  }

  /** "spiffe://<name>", the ID of the trust domain itself (what a signing certificate may carry). */
  get id(): SpiffeId {
    return SpiffeId.fromParts(this, '');
  }

  equals(other: TrustDomain | string): boolean {
    return this.name === (typeof other === 'string' ? other : other.name);
  }

  toString(): string {
    return this.name;
  }

  toJSON(): string {
    return this.name;
  }
}

/** A parsed SPIFFE ID: `spiffe://<trust domain><path>`. Made only by parsing, so always valid. */
export class SpiffeId {
  private constructor(
    /** The trust domain as a TrustDomain (`.domain.name` equals `.trustDomain`). */
    readonly domain: TrustDomain,
    /** "" or "/seg/seg…"; never a trailing slash. */
    readonly path: string,
  ) {}

  /** The trust domain name ("cluster.local"), a string for easy comparison and printing. */
  get trustDomain(): string {
    return this.domain.name;
  }

  static tryParse(text: string): SpiffeParseResult<SpiffeId> {
    if (text === '') return fail(SpiffeIdError.EMPTY);
    if (text.length > SPIFFE_ID_MAX_LENGTH) return fail(SpiffeIdError.TOO_LONG, `${text.length} characters`);
    if (!text.startsWith(SCHEME_PREFIX)) {
      const hint = text.toLowerCase().startsWith(SCHEME_PREFIX) ? 'the scheme must be lowercase' : undefined;
      return fail(SpiffeIdError.WRONG_SCHEME, hint);
    }
    const rest = text.slice(SCHEME_PREFIX.length);
    // The authority ends at the first "/", "?" or "#" (RFC 3986 §3.2).
    const end = rest.search(/[/?#]/);
    const authority = end < 0 ? rest : rest.slice(0, end);
    // The authority holds no "/", so TrustDomain.tryParse reads it as a bare name.
    const td = TrustDomain.tryParse(authority);
    if (!td.ok) return td;
    const after = end < 0 ? '' : rest.slice(end);
    if (after.startsWith('?')) return fail(SpiffeIdError.HAS_QUERY);
    if (after.startsWith('#')) return fail(SpiffeIdError.HAS_FRAGMENT);
    const path = checkPath(after);
    if (!path.ok) return path;
    return { ok: true, value: new SpiffeId(td.value, path.value) };
  }

  /** Parses a SPIFFE ID; throws MeshError SPIFFE_ID naming `field` (e.g. "principals[2]") and the reason. */
  static parse(text: string, field?: string): SpiffeId {
    const r = SpiffeId.tryParse(text);
    if (!r.ok) throw toError(text, r.reason, r.message, field);
    return r.value;
  }

  /** True when `text` parses as a SPIFFE ID. */
  static isValid(text: string): boolean {
    return SpiffeId.tryParse(text).ok;
  }

  /** From a trust domain and a path ("" or starting with "/"), each checked as parse would. */
  static fromParts(trustDomain: TrustDomain | string, path: string): SpiffeId {
    const td = typeof trustDomain === 'string' ? TrustDomain.parse(trustDomain, 'trust domain') : trustDomain;
    const p = checkPath(path);
    if (!p.ok) throw toError(path, p.reason, p.message, 'path', 'SPIFFE ID path');
    const id = new SpiffeId(td, p.value);
    if (id.toString().length > SPIFFE_ID_MAX_LENGTH) throw toError(id.toString(), SpiffeIdError.TOO_LONG, REASON_TEXT.tooLong, undefined);
    return id;
  }

  /** From a trust domain and path segments; each segment is checked alone (no "/" inside). */
  static fromSegments(trustDomain: TrustDomain | string, ...segments: string[]): SpiffeId {
    segments.forEach((s, i) => {
      const r = checkSegment(s, false);
      if (!r.ok) throw toError(s, r.reason, r.message, `segment ${i + 1}`, 'SPIFFE ID path segment');
      if (s.includes('/')) throw toError(s, SpiffeIdError.BAD_PATH_SEGMENT_CHAR, REASON_TEXT.badPathSegmentChar, `segment ${i + 1}`);
    });
    return SpiffeId.fromParts(trustDomain, segments.map((s) => `/${s}`).join(''));
  }

  /** The identity Istio gives a Kubernetes service account: spiffe://<td>/ns/<namespace>/sa/<serviceAccount>. */
  static forWorkload(trustDomain: TrustDomain | string, namespace: string, serviceAccount: string): SpiffeId {
    return SpiffeId.fromSegments(trustDomain, 'ns', namespace, 'sa', serviceAccount);
  }

  get segments(): string[] {
    return this.path === '' ? [] : this.path.slice(1).split('/');
  }

  /** Istio's shape /ns/<ns>/sa/<sa>, exactly. */
  get isIstioWorkload(): boolean {
    const s = this.segments;
    return s.length === 4 && s[0] === 'ns' && s[2] === 'sa';
  }

  get namespace(): string | null {
    return this.isIstioWorkload ? this.segments[1]! : null;
  }

  get serviceAccount(): string | null {
    return this.isIstioWorkload ? this.segments[3]! : null;
  }

  /** The ID as Istio's AuthorizationPolicy writes principals: "<td>/ns/<ns>/sa/<sa>" (no scheme). */
  get istioPrincipal(): string {
    return `${this.domain.name}${this.path}`;
  }

  memberOf(trustDomain: TrustDomain | string): boolean {
    return this.domain.equals(trustDomain);
  }

  equals(other: SpiffeId | string): boolean {
    return this.toString() === (typeof other === 'string' ? other : other.toString());
  }

  toString(): string {
    return `${SCHEME_PREFIX}${this.domain.name}${this.path}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// X509-SVID checks (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md)

/** Why a certificate is not a valid X509-SVID (leaf) or SVID signing certificate. Stable values. */
export const SvidViolation = {
  /** Not exactly one URI SAN (the spec: validators MUST reject more than one). */
  URI_SAN_COUNT: 'uriSanCount',
  /** The URI SAN is not a valid SPIFFE ID. */
  BAD_SPIFFE_ID: 'badSpiffeId',
  /** A leaf's SPIFFE ID must have a non-root path. */
  EMPTY_PATH: 'emptyPath',
  /** A signing certificate's SPIFFE ID, when present, must have no path. */
  SIGNING_ID_HAS_PATH: 'signingIdHasPath',
  TRUST_DOMAIN_MISMATCH: 'trustDomainMismatch',
  /** Leaf with basicConstraints cA true. */
  LEAF_IS_CA: 'leafIsCA',
  /** Signing certificate without basicConstraints cA true. */
  NOT_CA: 'notCA',
  NO_KEY_USAGE: 'noKeyUsage',
  KEY_USAGE_NOT_CRITICAL: 'keyUsageNotCritical',
  NO_DIGITAL_SIGNATURE: 'noDigitalSignature',
  LEAF_KEY_CERT_SIGN: 'leafKeyCertSign',
  LEAF_CRL_SIGN: 'leafCrlSign',
  NO_KEY_CERT_SIGN: 'noKeyCertSign',
  /** EKU present but without both serverAuth and clientAuth. */
  EXT_KEY_USAGE: 'extKeyUsage',
  /** Empty subject with a non-critical SAN extension (RFC 5280 §4.1.2.6). */
  SAN_NOT_CRITICAL: 'sanNotCritical',
} as const;
export type SvidViolationCode = (typeof SvidViolation)[keyof typeof SvidViolation];

export interface SvidProblem {
  code: SvidViolationCode;
  message: string;
}

export interface SvidCheckOptions {
  /** When given, the SPIFFE ID must be in this trust domain. */
  trustDomain?: TrustDomain | string;
}

function trustDomainOf(td: TrustDomain | string | undefined): TrustDomain | undefined {
  return td === undefined ? undefined : typeof td === 'string' ? TrustDomain.parse(td, 'trustDomain') : td;
}

function checkKeyUsageCritical(cert: Certificate, out: SvidProblem[]): boolean {
  if (cert.keyUsage === null) {
    out.push({ code: SvidViolation.NO_KEY_USAGE, message: 'the key usage extension is missing (it must be set on every SVID)' });
    return false;
  }
  if (!cert.keyUsageCritical) out.push({ code: SvidViolation.KEY_USAGE_NOT_CRITICAL, message: 'the key usage extension must be critical' });
  return true;
}

/**
 * Checks a leaf X509-SVID: exactly one URI SAN holding a valid SPIFFE ID with a non-root path (in `trustDomain`
 * if given), cA false, key usage present and critical with digitalSignature and neither keyCertSign nor cRLSign,
 * and an EKU, when present, with serverAuth and clientAuth. Returns every violation; [] means valid. Chain trust is
 * validateChain's business, not this function's.
 */
export function checkX509Svid(cert: Certificate, options: SvidCheckOptions = {}): SvidProblem[] {
  const out: SvidProblem[] = [];
  const td = trustDomainOf(options.trustDomain);
  const uris = cert.sans.uri;
  if (uris.length !== 1) {
    out.push({
      code: SvidViolation.URI_SAN_COUNT,
      message: uris.length === 0 ? 'no URI SAN: an X509-SVID has exactly one' : `${uris.length} URI SANs (${uris.join(', ')}): an X509-SVID has exactly one`,
    });
  } else {
    const r = SpiffeId.tryParse(uris[0]!);
    if (!r.ok) {
      out.push({ code: SvidViolation.BAD_SPIFFE_ID, message: `URI SAN "${uris[0]}" is not a valid SPIFFE ID: ${r.message}` });
    } else {
      if (r.value.path === '') out.push({ code: SvidViolation.EMPTY_PATH, message: `leaf SPIFFE ID "${r.value}" has no path` });
      if (td && !r.value.memberOf(td)) {
        out.push({ code: SvidViolation.TRUST_DOMAIN_MISMATCH, message: `SPIFFE ID "${r.value}" is not in trust domain "${td.name}"` });
      }
    }
  }
  if (cert.isCA) out.push({ code: SvidViolation.LEAF_IS_CA, message: 'a leaf SVID must not be a CA (basicConstraints cA is true)' });
  if (checkKeyUsageCritical(cert, out)) {
    const ku = cert.keyUsage!;
    if (!ku.includes('digitalSignature')) out.push({ code: SvidViolation.NO_DIGITAL_SIGNATURE, message: 'key usage lacks digitalSignature' });
    if (ku.includes('keyCertSign')) out.push({ code: SvidViolation.LEAF_KEY_CERT_SIGN, message: 'a leaf SVID must not have keyCertSign' });
    if (ku.includes('cRLSign')) out.push({ code: SvidViolation.LEAF_CRL_SIGN, message: 'a leaf SVID must not have cRLSign' });
  }
  const eku = cert.extKeyUsage;
  if (eku !== null && !(eku.includes(EKU.serverAuth) && eku.includes(EKU.clientAuth))) {
    out.push({ code: SvidViolation.EXT_KEY_USAGE, message: `extended key usage (${cert.extKeyUsageNames!.join(', ')}) must include serverAuth and clientAuth` });
  }
  if (cert.subjectDer.length <= 2 && cert.hasExtension('2.5.29.17') && !cert.sanCritical) {
    out.push({ code: SvidViolation.SAN_NOT_CRITICAL, message: 'the subject is empty, so the SAN extension must be critical' });
  }
  return out;
}

/**
 * Checks an X509-SVID signing (CA) certificate: cA true, critical key usage with keyCertSign, and, if it carries a
 * URI SAN, exactly one, a valid SPIFFE ID with no path (in `trustDomain` if given). The SPIFFE ID is optional.
 */
export function checkSigningCertificate(cert: Certificate, options: SvidCheckOptions = {}): SvidProblem[] {
  const out: SvidProblem[] = [];
  const td = trustDomainOf(options.trustDomain);
  if (!cert.isCA) out.push({ code: SvidViolation.NOT_CA, message: 'a signing certificate must have basicConstraints cA true' });
  if (checkKeyUsageCritical(cert, out) && !cert.keyUsage!.includes('keyCertSign')) {
    out.push({ code: SvidViolation.NO_KEY_CERT_SIGN, message: 'a signing certificate must have keyCertSign' });
  }
  const uris = cert.sans.uri;
  if (uris.length > 1) {
    out.push({ code: SvidViolation.URI_SAN_COUNT, message: `${uris.length} URI SANs (${uris.join(', ')}): a signing certificate has at most one` });
  } else if (uris.length === 1) {
    const r = SpiffeId.tryParse(uris[0]!);
    if (!r.ok) {
      out.push({ code: SvidViolation.BAD_SPIFFE_ID, message: `URI SAN "${uris[0]}" is not a valid SPIFFE ID: ${r.message}` });
    } else {
      if (r.value.path !== '') {
        out.push({ code: SvidViolation.SIGNING_ID_HAS_PATH, message: `signing certificate SPIFFE ID "${r.value}" must have no path` });
      }
      if (td && !r.value.memberOf(td)) {
        out.push({ code: SvidViolation.TRUST_DOMAIN_MISMATCH, message: `SPIFFE ID "${r.value}" is not in trust domain "${td.name}"` });
      }
    }
  }
  return out;
}

function describeCert(cert: Certificate): string {
  return cert.sans.uri[0] ?? (cert.subject || `serial ${cert.serial}`);
}

function svidError(kind: string, cert: Certificate, problems: SvidProblem[], source: string | undefined): MeshError {
  const who = source ?? describeCert(cert);
  return new MeshError(ErrorCodes.SVID, `${who}: not a valid ${kind}: ${problems.map((p) => p.message).join('; ')}`, {
    subject: who,
    details: { violations: problems.map((p) => p.code), problems },
  });
}

/** checkX509Svid, throwing MeshError SVID that lists every violation; returns the SPIFFE ID when valid. */
export function assertX509Svid(cert: Certificate, options: SvidCheckOptions = {}, source?: string): SpiffeId {
  const problems = checkX509Svid(cert, options);
  if (problems.length) throw svidError('X509-SVID', cert, problems, source);
  return SpiffeId.parse(cert.sans.uri[0]!);
}

/** checkSigningCertificate, throwing MeshError SVID that lists every violation. */
export function assertSigningCertificate(cert: Certificate, options: SvidCheckOptions = {}, source?: string): void {
  const problems = checkSigningCertificate(cert, options);
  if (problems.length) throw svidError('X509-SVID signing certificate', cert, problems, source);
}

/** The SPIFFE ID of a certificate that has exactly one valid one among its URI SANs, else null. */
export function spiffeIdOf(cert: Certificate): SpiffeId | null {
  const uris = cert.sans.uri;
  if (uris.length !== 1) return null;
  const r = SpiffeId.tryParse(uris[0]!);
  return r.ok ? r.value : null;
}
