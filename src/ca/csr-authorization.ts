import { isIP } from 'node:net';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';
import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicConstraints, KeyUsage, SubjectAlternativeName } from '@peculiar/asn1-x509';
import { OID, checkDnsName, keyUsageNames, type Csr, type CsrExtension } from '../pki/index.js';
import type { CallerIdentity } from './registration-types.js';

/**
 * Which extra names an identity may put in its certificate (the `issuance.dnsGrants` config). `identity` is a SPIFFE
 * ID, or a pattern ending in `*` that matches every ID with that prefix (spiffe://td/ns/web/sa/*). A grant name is
 * exact, or `*.suffix`, which covers one more label (a.suffix, not a.b.suffix) and the wildcard name itself.
 */
export interface DnsGrant {
  identity: string;
  dnsNames: string[];
  /** IP SANs, exact addresses; none unless granted. */
  ipAddresses?: string[];
}

/** What a CSR asked for, for audit: every SAN as requested (cut short if absurdly many). */
export interface RequestedNames {
  uris: string[];
  dnsNames: string[];
  ipAddresses: string[];
}

export interface AuthorizedCsr {
  /** The SPIFFE ID to certify: always the caller's. */
  spiffeId: string;
  /** Granted DNS names, normalized (lowercase, no trailing dot), in request order, no duplicates. */
  dnsNames: string[];
  ipAddresses: string[];
  requested: RequestedNames;
}

/** Extensions whose requested values are read here; every other one is ignored, or refused when critical. */
const UNDERSTOOD = new Set<string>([OID.subjectAltName, OID.basicConstraints, OID.keyUsage, OID.extKeyUsage]);
const MAX_NAMES_SHOWN = 20;

/** Whether a grant's identity pattern matches a SPIFFE ID. */
export function identityMatches(pattern: string, spiffeId: string): boolean {
  return pattern.endsWith('*') ? spiffeId.startsWith(pattern.slice(0, -1)) : pattern === spiffeId;
}

/** Whether a grant's DNS name (exact, or `*.suffix`) covers a requested, normalized name. */
export function dnsNameCovered(grant: string, name: string): boolean {
  const g = grant.toLowerCase().replace(/\.$/, '');
  if (g === name) return true;
  if (!g.startsWith('*.')) return false;
  const suffix = g.slice(1); // ".suffix"
  const label = name.slice(0, -suffix.length);
  return name.endsWith(suffix) && label.length > 0 && !label.includes('.') && label !== '*';
}

/**
 * Decides what a CSR may have, for an authenticated caller: the signature must verify (proof of possession) and the
 * key be strong enough (CSR_SIGNATURE, KEY_TOO_WEAK, KEY_TYPE); the only URI SAN allowed is the caller's own SPIFFE
 * ID (absent is fine: the caller's ID is used); DNS and IP SANs only where a grant covers both identity and name;
 * no other SAN types; never a CA (basicConstraints CA:true) nor keyCertSign / cRLSign (PERMISSION_DENIED); an
 * unknown critical extension, or a malformed one, is INVALID_ARGUMENT. The CSR's subject and any other requested
 * extension are ignored: the issuance policy decides the rest of the certificate.
 */
export function authorizeCsr(csr: Csr, caller: CallerIdentity, grants: readonly DnsGrant[]): AuthorizedCsr {
  csr.assertValid();
  const id = caller.spiffeId.toString();
  const requested: RequestedNames = { uris: [], dnsNames: [], ipAddresses: [] };
  const otherNames: string[] = [];

  const seen = new Set<string>();
  for (const ext of requestedExtensions(csr)) {
    if (seen.has(ext.oid)) throw invalid(`the CSR requests extension ${ext.oid} twice`);
    seen.add(ext.oid);
    if (!UNDERSTOOD.has(ext.oid)) {
      if (ext.critical) throw invalid(`the CSR requests critical extension ${ext.oid}, which this CA does not understand`);
      continue;
    }
    let caRequested = false;
    let caUsages: string[] = [];
    try {
      if (ext.oid === OID.subjectAltName) readGeneralNames(ext.value, requested, otherNames);
      else if (ext.oid === OID.basicConstraints) caRequested = readBasicConstraintsCa(ext.value);
      else if (ext.oid === OID.keyUsage) caUsages = readKeyUsage(ext.value).filter((u) => u === 'keyCertSign' || u === 'cRLSign');
    } catch (err) {
      throw invalid(`the CSR's extension ${ext.oid} is malformed: ${describeError(err)}`);
    }
    if (caRequested) throw forbidden(caller, 'the CSR asks for a CA certificate (basicConstraints CA:true); workloads get leaf certificates only');
    if (caUsages.length) throw forbidden(caller, `the CSR asks for key usage ${caUsages.join(' and ')}, which only a CA may have`);
  }
  const shownRequest = clipNames(requested);

  if (otherNames.length) {
    throw forbidden(caller, `the CSR asks for SANs of a type this CA does not issue (${clipList(otherNames).join(', ')}); only URI, DNS and IP`, shownRequest);
  }
  if (requested.uris.length > 1) {
    throw forbidden(caller, `the CSR asks for ${requested.uris.length} URI SANs (${clipList(requested.uris).join(', ')}); an X509-SVID has exactly one, the caller's own ID ${id}`, shownRequest);
  }
  if (requested.uris.length === 1 && requested.uris[0] !== id) {
    throw forbidden(caller, `the CSR asks for identity "${clip(requested.uris[0]!)}", but the caller authenticated as ${id}`, shownRequest);
  }

  const applicable = grants.filter((g) => identityMatches(g.identity, id));
  const dnsNames: string[] = [];
  for (const raw of requested.dnsNames) {
    let name: string;
    try {
      name = checkDnsName(raw, 'CSR DNS SAN');
    } catch (err) {
      throw invalid(describeError(err));
    }
    if (!applicable.some((g) => g.dnsNames.some((d) => dnsNameCovered(d, name)))) {
      throw forbidden(caller, `DNS name "${clip(name)}" is not granted to ${id} (issuance.dnsGrants)`, shownRequest);
    }
    if (!dnsNames.includes(name)) dnsNames.push(name);
  }
  const ipAddresses: string[] = [];
  for (const ip of requested.ipAddresses) {
    if (!applicable.some((g) => (g.ipAddresses ?? []).some((a) => canonicalIp(a) === ip))) {
      throw forbidden(caller, `IP address ${ip} is not granted to ${id}; IP SANs are issued only where granted`, shownRequest);
    }
    if (!ipAddresses.includes(ip)) ipAddresses.push(ip);
  }
  return { spiffeId: id, dnsNames, ipAddresses, requested: shownRequest };
}

/** The names a CSR asks for, without judging them, for audit of requests refused before authorization. */
export function requestedNames(csr: Csr): RequestedNames {
  const out: RequestedNames = { uris: [], dnsNames: [], ipAddresses: [] };
  const san = requestedExtensions(csr).find((e) => e.oid === OID.subjectAltName);
  if (san) readGeneralNames(san.value, out, []);
  return clipNames(out);
}

// ---- requested extensions, decoded with @peculiar/asn1-x509 ----

/** The extensions a CSR requests; a malformed attribute is the caller's fault (INVALID_ARGUMENT). */
function requestedExtensions(csr: Csr): CsrExtension[] {
  try {
    return csr.requestedExtensions;
  } catch (err) {
    throw invalid(describeError(err));
  }
}

/** GeneralNames (RFC 5280 4.2.1.6) into URIs, DNS names and IPs; every other name type is listed in `other`. */
function readGeneralNames(value: Buffer, into: RequestedNames, other: string[]): void {
  for (const n of AsnConvert.parse(value, SubjectAlternativeName)) {
    if (n.uniformResourceIdentifier !== undefined) into.uris.push(n.uniformResourceIdentifier);
    else if (n.dNSName !== undefined) into.dnsNames.push(n.dNSName);
    else if (n.iPAddress !== undefined) {
      // The converter renders a 4- or 16-byte address as text and anything else as hex.
      if (isIP(n.iPAddress) === 0) throw new Error(`an IP SAN that is neither IPv4 nor IPv6 (${n.iPAddress})`);
      into.ipAddresses.push(canonicalIp(n.iPAddress));
    }
    else if (n.rfc822Name !== undefined) other.push(`email:${n.rfc822Name}`);
    else other.push(n.otherName ? 'otherName' : n.directoryName ? 'directoryName' : n.registeredID ? 'registeredID' : 'other name');
  }
}

function readBasicConstraintsCa(value: Buffer): boolean {
  return AsnConvert.parse(value, BasicConstraints).cA;
}

function readKeyUsage(value: Buffer): string[] {
  return keyUsageNames(AsnConvert.parse(value, KeyUsage).toNumber());
}

/** RFC 5952 text for IPv6 (via the WHATWG URL parser), IPv4 unchanged: so grants and requests compare as text. */
function canonicalIp(text: string): string {
  const t = text.trim();
  if (isIP(t) !== 6) return t;
  return new URL(`http://[${t}]/`).hostname.slice(1, -1);
}

function invalid(message: string): MeshError {
  return new MeshError(ErrorCodes.INVALID_ARGUMENT, message);
}

function forbidden(caller: CallerIdentity, message: string, requested?: RequestedNames): MeshError {
  return new MeshError(ErrorCodes.PERMISSION_DENIED, message, {
    subject: caller.spiffeId.toString(),
    details: { method: caller.method, ...(requested ? { requested } : {}) },
  });
}

function clip(text: string, max = 200): string {
  const t = String(text).replace(/[\u0000-\u001f\u007f]/g, '?');
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

function clipList(list: string[]): string[] {
  const shown = list.slice(0, MAX_NAMES_SHOWN).map((n) => clip(n));
  return list.length > MAX_NAMES_SHOWN ? [...shown, `… ${list.length - MAX_NAMES_SHOWN} more`] : shown;
}

function clipNames(r: RequestedNames): RequestedNames {
  return { uris: clipList(r.uris), dnsNames: clipList(r.dnsNames), ipAddresses: clipList(r.ipAddresses) };
}
