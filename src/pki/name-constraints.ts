import { isIP } from 'node:net';
import * as asn1js from 'asn1js';
import type { Certificate } from './certificate.js';
import { children, parseDer, rawBytes } from './der.js';
import { OID } from './oids.js';

/**
 * RFC 5280 name constraints (§4.2.1.10, §6.1.3 (b)(c)), with the matching rules OpenSSL applies where the RFC
 * leaves room: a DNS or URI-host constraint with a leading "." means subdomains only; without it, the name itself
 * and (for DNS) its subdomains. A URI constraint is a host name, so `spiffe://cluster.local/ns/a/sa/b` is checked
 * as the host `cluster.local`. Names are read from the raw extensions (not Certificate's convenience views) so
 * that every GeneralName type, IP masks and directory names keep their exact bytes.
 */

export type GeneralNameType = 'otherName' | 'email' | 'dns' | 'x400' | 'dirName' | 'ediParty' | 'uri' | 'ip' | 'registeredId';

const TAG_TYPES: GeneralNameType[] = ['otherName', 'email', 'dns', 'x400', 'dirName', 'ediParty', 'uri', 'ip', 'registeredId'];

/** One GeneralName as encoded: `text` for the IA5String forms (email, dns, uri), `bytes` for every form. */
export interface RawGeneralName {
  type: GeneralNameType;
  /** IA5String value for email, dns and uri; a readable form for others. */
  text: string;
  /** IP: address (4/16 bytes) or address+mask (8/32); dirName: the Name's DER; others: the value bytes. */
  bytes: Buffer;
}

export interface ParsedNameConstraints {
  permitted: RawGeneralName[];
  excluded: RawGeneralName[];
  /** Set when a subtree has `minimum` ≠ 0 or a `maximum`, which RFC 5280 forbids and OpenSSL rejects. */
  badSyntax: string | null;
}

export interface NameConstraintViolation {
  kind: 'permitted' | 'excluded' | 'unsupported';
  type: GeneralNameType;
  /** The certificate's name at fault, readable. */
  name: string;
  message: string;
}

function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length === 16) {
    const parts: string[] = [];
    for (let i = 0; i < 16; i += 2) parts.push(bytes.readUInt16BE(i).toString(16));
    return parts.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
  }
  if (bytes.length === 8 || bytes.length === 32) {
    const half = bytes.length / 2;
    let prefix = 0;
    for (const b of bytes.subarray(half)) prefix += b.toString(2).replace(/0/g, '').length;
    return `${formatIp(bytes.subarray(0, half))}/${prefix}`;
  }
  return `0x${bytes.toString('hex')}`;
}

function generalName(el: asn1js.AsnType): RawGeneralName | null {
  const id = (el as asn1js.BaseBlock).idBlock;
  if (id.tagClass !== 3 || id.tagNumber > 8) return null;
  const type = TAG_TYPES[id.tagNumber]!;
  if (type === 'dirName') {
    // [4] is EXPLICIT: the Name SEQUENCE sits inside.
    const inner = children(el)[0];
    const bytes = inner ? rawBytes(inner) : Buffer.alloc(0);
    return { type, text: inner ? dnToString(bytes) : '', bytes };
  }
  const whole = rawBytes(el);
  const value = id.isConstructed ? whole : Buffer.from((el as asn1js.Primitive).valueBlock.valueHexView);
  if (type === 'email' || type === 'dns' || type === 'uri') return { type, text: value.toString('latin1'), bytes: value };
  if (type === 'ip') return { type, text: formatIp(value), bytes: value };
  return { type, text: `${type}:${value.toString('hex')}`, bytes: value };
}

/** GeneralNames ::= SEQUENCE OF GeneralName, from DER (the SAN extension value). */
export function parseGeneralNames(der: Uint8Array, source = 'GeneralNames'): RawGeneralName[] {
  return children(parseDer(der, source)).flatMap((el) => {
    const n = generalName(el);
    return n ? [n] : [];
  });
}

function extensionValue(cert: Certificate, oid: string): Buffer | null {
  return cert.extension(oid)?.value ?? null;
}

/** Every name of the SAN extension, of every GeneralName type. */
export function subjectAltNames(cert: Certificate): RawGeneralName[] {
  const v = extensionValue(cert, OID.subjectAltName);
  return v ? parseGeneralNames(v, 'subjectAltName') : [];
}

/** The NameConstraints extension of a CA certificate, or null when it has none. */
export function readNameConstraints(cert: Certificate): ParsedNameConstraints | null {
  const v = extensionValue(cert, OID.nameConstraints);
  if (!v) return null;
  const out: ParsedNameConstraints = { permitted: [], excluded: [], badSyntax: null };
  for (const part of children(parseDer(v, 'nameConstraints'))) {
    const tag = (part as asn1js.BaseBlock).idBlock.tagNumber;
    const list = tag === 0 ? out.permitted : tag === 1 ? out.excluded : null;
    if (!list) continue;
    for (const subtree of children(part)) {
      const [base, ...rest] = children(subtree);
      const n = base ? generalName(base) : null;
      if (n) list.push(n);
      for (const r of rest) {
        const id = (r as asn1js.BaseBlock).idBlock;
        const isZeroMinimum = id.tagNumber === 0 && Buffer.from((r as asn1js.Primitive).valueBlock.valueHexView).every((b) => b === 0);
        if (!isZeroMinimum) out.badSyntax = 'a subtree sets minimum or maximum, which RFC 5280 does not allow';
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Distinguished names: attribute types and values, compared as RFC 5280 §7.1 asks (case- and space-insensitive
// for strings), which is also what OpenSSL's canonical encoding achieves.

const STRING_TAGS = new Set([12, 19, 20, 22, 26, 28, 30]); // UTF8, Printable, Teletex, IA5, Visible, Universal, BMP
const DN_LABELS: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '0.9.2342.19200300.100.1.25': 'DC',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

interface Attribute {
  oid: string;
  /** Decoded text for string types, else null. */
  text: string | null;
  /** Comparison key: normalized text, or hex of the value's DER. */
  key: string;
}

function decodeString(el: asn1js.AsnType): string | null {
  const id = (el as asn1js.BaseBlock).idBlock;
  if (id.tagClass !== 1 || !STRING_TAGS.has(id.tagNumber)) return null;
  const bytes = Buffer.from((el as asn1js.Primitive).valueBlock.valueHexView ?? new Uint8Array());
  if (id.tagNumber === 30) return bytes.length % 2 === 0 ? Buffer.from(bytes).swap16().toString('utf16le') : null;
  if (id.tagNumber === 28) return null; // UniversalString (UTF-32): never seen in practice; compared as bytes.
  return id.tagNumber === 12 ? bytes.toString('utf8') : bytes.toString('latin1');
}

/** The RDNs of a Name, each a sorted list of attributes. */
function parseName(der: Uint8Array): Attribute[][] {
  const name = parseDer(der, 'distinguished name');
  return children(name).map((rdn) =>
    children(rdn)
      .map((atv) => {
        const [type, value] = children(atv);
        const oid = (type as asn1js.ObjectIdentifier).valueBlock.toString();
        const text = value ? decodeString(value) : null;
        const key = text !== null ? text.trim().replace(/\s+/g, ' ').toLowerCase() : value ? rawBytes(value).toString('hex') : '';
        return { oid, text, key };
      })
      .sort((a, b) => (a.oid + a.key < b.oid + b.key ? -1 : 1)),
  );
}

function dnToString(der: Uint8Array): string {
  try {
    return parseName(der)
      .map((rdn) => rdn.map((a) => `${DN_LABELS[a.oid] ?? a.oid}=${a.text ?? `#${a.key}`}`).join('+'))
      .join(', ');
  } catch {
    return '(unparsable name)';
  }
}

function attributesOf(der: Uint8Array, oid: string): string[] {
  return parseName(der)
    .flat()
    .filter((a) => a.oid === oid && a.text !== null)
    .map((a) => a.text!);
}

// ---------------------------------------------------------------------------------------------------------------
// Matching one name against one constraint. Each returns true when `name` lies within `constraint`.

/** DNS: "" matches all; ".example.com" matches subdomains only; "example.com" matches itself and subdomains. */
export function dnsWithin(name: string, constraint: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  const c = constraint.toLowerCase().replace(/\.$/, '');
  if (c === '') return true;
  if (c.startsWith('.')) return n.length > c.length && n.endsWith(c);
  return n === c || n.endsWith(`.${c}`);
}

/** The host of a URI ("scheme://[userinfo@]host[:port]/…"), lowercased, or null when it has no authority. */
export function uriHost(uri: string): string | null {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(uri);
  if (!m) return null;
  let authority = m[1]!;
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  let host: string;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    host = close < 0 ? '' : authority.slice(1, close);
  } else {
    host = authority.replace(/:\d*$/, '');
  }
  return host === '' ? null : host.toLowerCase();
}

/** URI: the constraint is a host; ".example.com" means any host under example.com (not example.com itself). */
export function uriWithin(uri: string, constraint: string): boolean {
  const host = uriHost(uri);
  if (host === null) return false;
  const c = constraint.toLowerCase();
  if (c.startsWith('.')) return host.length > c.length && host.endsWith(c);
  return host === c;
}

/** Email: "a@b.org" one mailbox; ".b.org" any host under b.org; "b.org" any mailbox at b.org. */
export function emailWithin(email: string, constraint: string): boolean {
  const at = email.lastIndexOf('@');
  if (at < 0) return false;
  const local = email.slice(0, at);
  const domain = email.slice(at + 1).toLowerCase();
  const c = constraint;
  if (c.includes('@')) {
    const cat = c.lastIndexOf('@');
    // The local part is case-sensitive (RFC 5321), the domain is not.
    return local === c.slice(0, cat) && domain === c.slice(cat + 1).toLowerCase();
  }
  const cl = c.toLowerCase();
  if (cl.startsWith('.')) return domain.length > cl.length && domain.endsWith(cl);
  return domain === cl;
}

/** IP: the address (4 or 16 bytes) against address+mask (8 or 32 bytes); families never match each other. */
export function ipWithin(addr: Uint8Array, range: Uint8Array): boolean {
  if (range.length !== addr.length * 2) return false;
  for (let i = 0; i < addr.length; i++) {
    const mask = range[addr.length + i]!;
    if ((addr[i]! & mask) !== (range[i]! & mask)) return false;
  }
  return true;
}

/** Directory names: the constraint's RDNs are a prefix of the subject's. */
export function dnWithin(subjectDer: Uint8Array, constraintDer: Uint8Array): boolean {
  const s = parseName(subjectDer);
  const c = parseName(constraintDer);
  if (c.length > s.length) return false;
  return c.every((rdn, i) => {
    const other = s[i]!;
    return rdn.length === other.length && rdn.every((a, j) => a.oid === other[j]!.oid && a.key === other[j]!.key);
  });
}

function within(name: RawGeneralName, constraint: RawGeneralName): boolean {
  switch (name.type) {
    case 'dns':
      return dnsWithin(name.text, constraint.text);
    case 'uri':
      return uriWithin(name.text, constraint.text);
    case 'email':
      return emailWithin(name.text, constraint.text);
    case 'ip':
      return ipWithin(name.bytes, constraint.bytes);
    case 'dirName':
      return dnWithin(name.bytes, constraint.bytes);
    default:
      return false;
  }
}

const SUPPORTED = new Set<GeneralNameType>(['dns', 'uri', 'email', 'ip', 'dirName']);
const CN = '2.5.4.3';
const EMAIL_ADDRESS = '1.2.840.113549.1.9.1';

/** A CN that reads as a host name with two or more labels: OpenSSL checks such CNs against DNS constraints. */
function cnAsDns(cn: string): string | null {
  if (!/^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)+$/.test(cn)) return null;
  return isIP(cn) ? null : cn;
}

function label(n: RawGeneralName): string {
  const prefix = { dns: 'DNS', uri: 'URI', email: 'email', ip: 'IP', dirName: 'DirName' }[n.type as string] ?? n.type;
  return `${prefix}:${n.text}`;
}

/**
 * The names of `cert` that a CA's name constraints govern: its SANs, its subject (when not empty) as a directory
 * name, subject emailAddress attributes as email, and, for the leaf without DNS SANs, host-like CNs as DNS names.
 */
export function constrainedNames(cert: Certificate, isLeaf: boolean): RawGeneralName[] {
  const names = subjectAltNames(cert);
  const subject = cert.subjectDer;
  if (children(parseDer(subject, 'subject')).length > 0) {
    names.push({ type: 'dirName', text: dnToString(subject), bytes: subject });
    for (const e of attributesOf(subject, EMAIL_ADDRESS)) names.push({ type: 'email', text: e, bytes: Buffer.from(e) });
    if (isLeaf && !names.some((n) => n.type === 'dns')) {
      for (const cn of attributesOf(subject, CN)) {
        const dns = cnAsDns(cn);
        if (dns) names.push({ type: 'dns', text: dns, bytes: Buffer.from(dns) });
      }
    }
  }
  return names;
}

/** Checks the names of `cert` against one CA's constraints; [] when they all lie within. */
export function checkNameConstraints(cert: Certificate, nc: ParsedNameConstraints, options: { isLeaf: boolean }): NameConstraintViolation[] {
  const out: NameConstraintViolation[] = [];
  const names = constrainedNames(cert, options.isLeaf);
  if (nc.badSyntax && names.length) {
    out.push({ kind: 'unsupported', type: 'otherName', name: '', message: nc.badSyntax });
    return out;
  }
  for (const name of names) {
    const excl = nc.excluded.filter((c) => c.type === name.type);
    const perm = nc.permitted.filter((c) => c.type === name.type);
    if (excl.length === 0 && perm.length === 0) continue;
    if (!SUPPORTED.has(name.type)) {
      out.push({ kind: 'unsupported', type: name.type, name: name.text, message: `${name.type} names cannot be checked against ${name.type} constraints` });
      continue;
    }
    if (name.type === 'uri' && uriHost(name.text) === null) {
      out.push({ kind: 'unsupported', type: 'uri', name: name.text, message: `${label(name)} has no host to check against URI constraints` });
      continue;
    }
    if (name.type === 'email' && !name.text.includes('@')) {
      out.push({ kind: 'unsupported', type: 'email', name: name.text, message: `${label(name)} is not a mailbox` });
      continue;
    }
    const hit = excl.find((c) => within(name, c));
    if (hit) {
      out.push({ kind: 'excluded', type: name.type, name: name.text, message: `${label(name)} is within excluded subtree ${label(hit)}` });
      continue;
    }
    if (perm.length && !perm.some((c) => within(name, c))) {
      out.push({
        kind: 'permitted',
        type: name.type,
        name: name.text,
        message: `${label(name)} is outside the permitted subtrees (${perm.map(label).join(', ')})`,
      });
    }
  }
  return out;
}
