import { isIP } from 'node:net';
import { ErrorCodes, MeshError } from '../core/index.js';

/** A subject alternative name as users write it and as `openssl x509 -ext subjectAltName` shows it. */
export type San =
  | { type: 'dns'; value: string }
  | { type: 'ip'; value: string }
  | { type: 'uri'; value: string }
  | { type: 'email'; value: string };

export interface SanSet {
  dns: string[];
  ip: string[];
  uri: string[];
  email: string[];
}

export function emptySanSet(): SanSet {
  return { dns: [], ip: [], uri: [], email: [] };
}

export function sanSetToList(set: SanSet): San[] {
  return [
    ...set.dns.map((value) => ({ type: 'dns' as const, value })),
    ...set.ip.map((value) => ({ type: 'ip' as const, value })),
    ...set.uri.map((value) => ({ type: 'uri' as const, value })),
    ...set.email.map((value) => ({ type: 'email' as const, value })),
  ];
}

/** "DNS:foo", "IP:10.0.0.1", "URI:spiffe://…", "email:a@b", the labels OpenSSL prints. */
export function formatSan(san: San): string {
  const label = { dns: 'DNS', ip: 'IP', uri: 'URI', email: 'email' }[san.type];
  return `${label}:${san.value}`;
}

const DNS_LABEL = /^(?:\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$/i;

/** Checks a DNS SAN: LDH labels of at most 63 characters, at most 253 in all, a wildcard only as the whole first label. */
export function checkDnsName(name: string, field = 'dns'): string {
  const n = name.trim().replace(/\.$/, '');
  const labels = n.split('.');
  const ok =
    n.length > 0 &&
    n.length <= 253 &&
    labels.every((l, i) => DNS_LABEL.test(l) && (l !== '*' || i === 0)) &&
    !(labels[0] === '*' && labels.length < 2);
  if (!ok) {
    throw new MeshError(ErrorCodes.SAN, `${field}: "${name}" is not a valid DNS name`, { subject: field });
  }
  return n.toLowerCase();
}

export function checkIp(addr: string, field = 'ip'): string {
  const a = addr.trim();
  if (isIP(a) === 0) throw new MeshError(ErrorCodes.SAN, `${field}: "${addr}" is not an IPv4 or IPv6 address`, { subject: field });
  return a;
}

export function checkUri(uri: string, field = 'uri'): string {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new MeshError(ErrorCodes.SAN, `${field}: "${uri}" is not an absolute URI`, { subject: field });
  }
  if (!u.protocol) throw new MeshError(ErrorCodes.SAN, `${field}: "${uri}" has no scheme`, { subject: field });
  return uri;
}

export function checkEmail(email: string, field = 'email'): string {
  if (!/^[^\s@]+@[^\s@]+$/.test(email)) throw new MeshError(ErrorCodes.SAN, `${field}: "${email}" is not an email address`, { subject: field });
  return email;
}

export function checkSan(san: San, field = 'san'): San {
  switch (san.type) {
    case 'dns':
      return { type: 'dns', value: checkDnsName(san.value, field) };
    case 'ip':
      return { type: 'ip', value: checkIp(san.value, field) };
    case 'uri':
      return { type: 'uri', value: checkUri(san.value, field) };
    case 'email':
      return { type: 'email', value: checkEmail(san.value, field) };
  }
}
