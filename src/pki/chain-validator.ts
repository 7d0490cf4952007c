import { isIP } from 'node:net';
import { ErrorCodes, MeshError } from '../core/index.js';
import { Certificate } from './certificate.js';
import { checkNameConstraints, readNameConstraints, subjectAltNames } from './name-constraints.js';
import { EKU, OID } from './oids.js';

/**
 * X.509 path building and validation (RFC 5280 §6) for mesh peers: from a leaf through untrusted intermediates to
 * one of the roots of a trust bundle. Pure and synchronous; every failure is a typed reason with the depth of the
 * certificate at fault (0 = leaf), like OpenSSL's verify callback, but all of them at once instead of the first.
 *
 * Where RFC 5280 leaves a choice we follow OpenSSL's `verify -x509_strict`: roots are checked for validity, CA flag
 * and EKU too; an issuer's EKU, when present, must allow the purpose; name constraints of every CA, root included,
 * apply to the certificates below it; anyExtendedKeyUsage alone does not satisfy a TLS purpose (OpenSSL and BoringSSL,
 * hence Node and Envoy, refuse it in the handshake; GnuTLS and Go accept it: see `acceptAnyExtendedKeyUsage`).
 * Unlike OpenSSL -x509_strict, a CA without a key usage extension is accepted (RFC 5280 path validation does not
 * require one, and `openssl req -x509` makes such roots), any certificate of the bundle is a trust anchor (a bundle
 * holding an intermediate anchors there, as Go does), and certificate policies are not processed.
 */

export const ChainReason = {
  SIGNATURE: 'signature',
  EXPIRED: 'expired',
  NOT_YET_VALID: 'notYetValid',
  NOT_CA: 'notCA',
  PATH_LENGTH: 'pathLength',
  KEY_USAGE: 'keyUsage',
  EXT_KEY_USAGE: 'extKeyUsage',
  NAME_CONSTRAINTS: 'nameConstraints',
  /** The chain ends at a self-signed certificate that is not in the trust bundle. */
  UNTRUSTED_ROOT: 'untrustedRoot',
  /** The issuer of the top certificate is neither among the intermediates nor in the trust bundle. */
  NO_ISSUER: 'noIssuer',
  UNKNOWN_CRITICAL_EXTENSION: 'unknownCriticalExtension',
  HOSTNAME: 'hostname',
  /** Every path to a root needs more intermediates than maxDepth allows. */
  DEPTH: 'depth',
} as const;
export type ChainReasonCode = (typeof ChainReason)[keyof typeof ChainReason];

export interface ChainProblem {
  code: ChainReasonCode;
  message: string;
  /** Position in `chain` of the certificate at fault: 0 is the leaf. */
  depth: number;
}

export type ChainPurpose = 'server' | 'client' | 'any';

export interface ValidateChainOptions {
  leaf: Certificate;
  /** Untrusted certificates that may complete the path, in any order; unrelated ones are ignored. */
  intermediates?: Certificate[];
  /** The trust bundle: one or more roots (two during a root rotation). */
  roots: Certificate[];
  /** When to judge validity periods; now by default. */
  at?: Date;
  /** TLS role of the leaf: its EKU (and key usage) must allow it. 'any' skips purpose checks. Default 'any'. */
  purpose?: ChainPurpose;
  /** When given, the leaf's DNS or IP SANs must match (wildcards in the leftmost label only; no CN fallback). */
  hostname?: string;
  /** Most intermediates between leaf and root, as OpenSSL's -verify_depth counts. Default 10. */
  maxDepth?: number;
  /** Critical extension OIDs the caller processes itself, on top of those this validator understands. */
  knownCriticalExtensions?: string[];
  /** Let anyExtendedKeyUsage stand for serverAuth/clientAuth, as RFC 5280 permits and GnuTLS/Go do. Default false. */
  acceptAnyExtendedKeyUsage?: boolean;
}

export type ChainResult =
  | { ok: true; chain: Certificate[] }
  | { ok: false; /** The best path found: leaf first, as far as it got. */ chain: Certificate[]; reasons: ChainProblem[] };

/** Critical extensions this validator acts on, or (policies) accepts without processing as OpenSSL does. */
const UNDERSTOOD_CRITICAL = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.nameConstraints,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.certificatePolicies,
  OID.tlsFeature,
  '2.5.29.33', // policyMappings
  '2.5.29.36', // policyConstraints
  '2.5.29.54', // inhibitAnyPolicy
]);

const PURPOSE_EKU: Record<Exclude<ChainPurpose, 'any'>, string> = { server: EKU.serverAuth, client: EKU.clientAuth };

// What OpenSSL's purpose checks accept as leaf key usage for TLS (ku_reject with KU_TLS, or signing-only for clients).
const PURPOSE_KEY_USAGE: Record<Exclude<ChainPurpose, 'any'>, string[]> = {
  server: ['digitalSignature', 'keyEncipherment', 'keyAgreement'],
  client: ['digitalSignature', 'keyAgreement'],
};

const DEFAULT_MAX_DEPTH = 10;
/** Bounds on the search, so that a hostile pile of cross-signed intermediates cannot make a call slow. */
const MAX_COMPLETE_PATHS = 32;
const MAX_SEARCH_NODES = 512;

type PathEnd = 'root' | 'noIssuer' | 'untrustedRoot' | 'depth';

interface Context {
  at: Date;
  purpose: ChainPurpose;
  hostname: string | undefined;
  maxDepth: number;
  acceptAnyEku: boolean;
  known: Set<string>;
  rootsBySubject: Map<string, Certificate[]>;
  intsBySubject: Map<string, Certificate[]>;
  sigCache: Map<Certificate, Map<Certificate, boolean>>;
  nodes: number;
}

function idOf(cert: Certificate): string {
  return cert.fingerprint256;
}

function nameKey(der: Buffer): string {
  return der.toString('base64');
}

function groupBySubject(certs: Certificate[]): Map<string, Certificate[]> {
  const m = new Map<string, Certificate[]>();
  for (const c of certs) {
    const k = nameKey(c.subjectDer);
    const list = m.get(k);
    if (list) list.push(c);
    else m.set(k, [c]);
  }
  return m;
}

function dedupe(certs: Certificate[], exclude: Set<string>): Certificate[] {
  const seen = new Set(exclude);
  return certs.filter((c) => {
    const id = idOf(c);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** The signature check, once per (child, issuer) pair within one validation. */
function signedBy(ctx: Context, child: Certificate, issuer: Certificate): boolean {
  let byIssuer = ctx.sigCache.get(child);
  if (!byIssuer) ctx.sigCache.set(child, (byIssuer = new Map()));
  let ok = byIssuer.get(issuer);
  if (ok === undefined) {
    ok = child.verifySignature(issuer.publicKey);
    byIssuer.set(issuer, ok);
  }
  return ok;
}

/** Issuer candidates, best first: signature verifies, AKI matches SKI, valid now. All are still tried in order. */
function ordered(ctx: Context, child: Certificate, candidates: Certificate[]): Certificate[] {
  const aki = child.authorityKeyId;
  const score = (c: Certificate): number => {
    const ski = c.subjectKeyId;
    const keyIdScore = aki && ski ? (aki === ski ? 0 : 2) : 1;
    return (signedBy(ctx, child, c) ? 0 : 8) + keyIdScore + (c.validAt(ctx.at) ? 0 : 1);
  };
  return candidates
    .map((c, i) => ({ c, i, s: score(c) }))
    .sort((a, b) => a.s - b.s || a.i - b.i)
    .map((x) => x.c);
}

/** Depth-first enumeration of paths from the leaf: complete ones (ending at a trust anchor) and dead ends. */
function* buildPaths(ctx: Context, path: Certificate[], seen: Set<string>): Generator<{ path: Certificate[]; end: PathEnd }> {
  if (++ctx.nodes > MAX_SEARCH_NODES) return;
  const cur = path[path.length - 1]!;
  const key = nameKey(cur.issuerDer);
  const roots = (ctx.rootsBySubject.get(key) ?? []).filter((r) => !seen.has(idOf(r)));
  const ints = (ctx.intsBySubject.get(key) ?? []).filter((c) => !seen.has(idOf(c)));
  if (roots.length === 0 && ints.length === 0) {
    yield { path, end: cur.isSelfIssued ? 'untrustedRoot' : 'noIssuer' };
    return;
  }
  for (const root of ordered(ctx, cur, roots)) yield { path: [...path, root], end: 'root' };
  if (ints.length === 0) return;
  // path holds the leaf and the intermediates so far; one more must stay within maxDepth.
  if (path.length > ctx.maxDepth) {
    if (roots.length === 0) yield { path, end: 'depth' };
    return;
  }
  for (const next of ordered(ctx, cur, ints)) {
    yield* buildPaths(ctx, [...path, next], new Set(seen).add(idOf(next)));
  }
}

function displayName(cert: Certificate): string {
  const san = cert.sans;
  return cert.subject || san.uri[0] || san.dns[0] || san.ip[0] || san.email[0] || `serial ${cert.serial}`;
}

function who(chain: Certificate[], i: number, complete: boolean): string {
  const role = i === 0 ? 'leaf' : complete && i === chain.length - 1 ? 'root' : `intermediate ${i}`;
  return `${role} "${displayName(chain[i]!)}"`;
}

/** Leaf matches `hostname`: an IP against IP SANs (by bytes), a name against DNS SANs (with leftmost wildcard). */
export function matchesHostname(cert: Certificate, hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host)) {
    const want = ipBytes(host);
    return subjectAltNames(cert).some((n) => n.type === 'ip' && want !== null && n.bytes.equals(want));
  }
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === '') return false;
  return cert.sans.dns.some((d) => {
    const pattern = d.toLowerCase().replace(/\.$/, '');
    if (pattern === h) return true;
    if (!pattern.startsWith('*.')) return false;
    const base = pattern.slice(2);
    const dot = h.indexOf('.');
    // "*.example.com" covers one label: a.example.com, not example.com nor a.b.example.com; never "*.com".
    return base.includes('.') && dot > 0 && h.slice(dot + 1) === base;
  });
}

function ipBytes(text: string): Buffer | null {
  if (isIP(text) === 4) return Buffer.from(text.split('.').map(Number));
  if (isIP(text) !== 6) return null;
  let t = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    t = t.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [left, right] = t.includes('::') ? t.split('::') : [t, undefined];
  const l = left ? left.split(':') : [];
  const r = right ? right.split(':') : [];
  const groups = right === undefined ? l : [...l, ...Array(8 - l.length - r.length).fill('0'), ...r];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Every check of RFC 5280 §6.1.3/6.1.4 on one path; `complete` when its last certificate is a trust anchor. */
function checkPath(ctx: Context, chain: Certificate[], complete: boolean): ChainProblem[] {
  const out: ChainProblem[] = [];
  const n = chain.length;
  const add = (code: ChainReasonCode, depth: number, message: string): void => {
    out.push({ code, depth, message });
  };
  for (let i = 0; i < n; i++) {
    const c = chain[i]!;
    const name = who(chain, i, complete);
    if (ctx.at.getTime() < c.notBefore.getTime()) {
      add(ChainReason.NOT_YET_VALID, i, `${name} is not valid before ${c.notBefore.toISOString()} (checked at ${ctx.at.toISOString()})`);
    } else if (ctx.at.getTime() > c.notAfter.getTime()) {
      add(ChainReason.EXPIRED, i, `${name} expired at ${c.notAfter.toISOString()} (checked at ${ctx.at.toISOString()})`);
    }
    for (const e of c.extensionOids) {
      if (e.critical && !ctx.known.has(e.oid)) add(ChainReason.UNKNOWN_CRITICAL_EXTENSION, i, `${name} has an unknown critical extension ${e.oid}`);
    }
    if (i + 1 < n && !signedBy(ctx, c, chain[i + 1]!)) {
      add(ChainReason.SIGNATURE, i, `the signature of ${name} does not verify with the key of ${who(chain, i + 1, complete)}`);
    }
    if (i === 0) {
      checkLeaf(ctx, c, name, add);
      continue;
    }
    // From here on, c issued chain[i - 1]: it acts as a CA.
    if (!c.isCA) add(ChainReason.NOT_CA, i, `${name} issued ${who(chain, i - 1, complete)} but is not a CA (basicConstraints cA is not true)`);
    const ku = c.keyUsage;
    if (ku !== null && !ku.includes('keyCertSign')) {
      add(ChainReason.KEY_USAGE, i, `${name} issued ${who(chain, i - 1, complete)} but its key usage (${ku.join(', ') || 'none'}) lacks keyCertSign`);
    }
    const pathLen = c.basicConstraints?.pathLen;
    if (pathLen != null) {
      // RFC 5280 §6.1.4 (l)(m): count the non-self-issued intermediates between this CA and the leaf.
      const below = chain.slice(1, i).filter((x) => !x.isSelfIssued).length;
      if (below > pathLen) add(ChainReason.PATH_LENGTH, i, `${name} allows ${pathLen} intermediate(s) below it (pathLen), the path has ${below}`);
    }
    if (ctx.purpose !== 'any') {
      if (!ekuAllows(ctx, c, ctx.purpose)) {
        add(ChainReason.EXT_KEY_USAGE, i, `${name} restricts extended key usage to ${c.extKeyUsageNames!.join(', ')}, which excludes ${ekuLabel(ctx.purpose)}`);
      }
    }
    checkConstraintsFrom(chain, i, complete, add);
  }
  return out;
}

/** Absent EKU allows every purpose; present, it must name the purpose (or anyEKU, when the caller accepts it). */
function ekuAllows(ctx: Context, cert: Certificate, purpose: Exclude<ChainPurpose, 'any'>): boolean {
  const eku = cert.extKeyUsage;
  return eku === null || eku.includes(PURPOSE_EKU[purpose]) || (ctx.acceptAnyEku && eku.includes(EKU.any));
}

function ekuLabel(purpose: Exclude<ChainPurpose, 'any'>): string {
  return purpose === 'server' ? 'serverAuth' : 'clientAuth';
}

function checkLeaf(ctx: Context, leaf: Certificate, name: string, add: (code: ChainReasonCode, depth: number, message: string) => void): void {
  if (ctx.purpose !== 'any') {
    if (!ekuAllows(ctx, leaf, ctx.purpose)) {
      add(ChainReason.EXT_KEY_USAGE, 0, `${name} has extended key usage ${leaf.extKeyUsageNames!.join(', ')}, not ${ekuLabel(ctx.purpose)}`);
    }
    const ku = leaf.keyUsage;
    const allowed = PURPOSE_KEY_USAGE[ctx.purpose];
    if (ku !== null && !ku.some((u) => allowed.includes(u))) {
      add(ChainReason.KEY_USAGE, 0, `${name} key usage (${ku.join(', ') || 'none'}) allows none of ${allowed.join(', ')} needed by a TLS ${ctx.purpose}`);
    }
  }
  if (ctx.hostname !== undefined && !matchesHostname(leaf, ctx.hostname)) {
    const names = [...leaf.sans.dns, ...leaf.sans.ip];
    add(ChainReason.HOSTNAME, 0, `${name} does not match host "${ctx.hostname}" (its DNS/IP SANs: ${names.join(', ') || 'none'})`);
  }
}

/** The name constraints of chain[ca] govern every certificate below it, skipping self-issued intermediates. */
function checkConstraintsFrom(
  chain: Certificate[],
  ca: number,
  complete: boolean,
  add: (code: ChainReasonCode, depth: number, message: string) => void,
): void {
  let nc;
  try {
    nc = readNameConstraints(chain[ca]!);
  } catch {
    add(ChainReason.NAME_CONSTRAINTS, ca, `${who(chain, ca, complete)} has a name constraints extension that does not parse`);
    return;
  }
  if (!nc) return;
  for (let k = 0; k < ca; k++) {
    if (k > 0 && chain[k]!.isSelfIssued) continue;
    let violations;
    try {
      violations = checkNameConstraints(chain[k]!, nc, { isLeaf: k === 0 });
    } catch {
      // Names that cannot be read cannot be shown to lie within the constraints.
      add(ChainReason.NAME_CONSTRAINTS, k, `${who(chain, k, complete)}: its names do not parse, so the name constraints of ${who(chain, ca, complete)} cannot be checked`);
      continue;
    }
    for (const v of violations) {
      add(ChainReason.NAME_CONSTRAINTS, k, `${who(chain, k, complete)}: ${v.message}, by the name constraints of ${who(chain, ca, complete)}`);
    }
  }
}

function checkOptions(options: ValidateChainOptions): void {
  const bad = (field: string, hint: string): never => {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `validateChain: ${field} ${hint}`, { subject: field });
  };
  if (!(options.leaf instanceof Certificate)) bad('leaf', 'must be a Certificate (use Certificate.parse)');
  if (!Array.isArray(options.roots)) bad('roots', 'must be an array of Certificates (the trust bundle)');
  if (options.roots.some((r) => !(r instanceof Certificate))) bad('roots', 'must hold only Certificates');
  if (options.intermediates !== undefined && (!Array.isArray(options.intermediates) || options.intermediates.some((c) => !(c instanceof Certificate)))) {
    bad('intermediates', 'must be an array of Certificates');
  }
  if (options.purpose !== undefined && !['server', 'client', 'any'].includes(options.purpose)) {
    bad('purpose', `"${String(options.purpose)}" is not one of server, client, any`);
  }
  if (options.maxDepth !== undefined && !(Number.isInteger(options.maxDepth) && options.maxDepth >= 0)) {
    bad('maxDepth', `must be a whole number ≥ 0, not ${String(options.maxDepth)}`);
  }
  if (options.at !== undefined && !(options.at instanceof Date && !Number.isNaN(options.at.getTime()))) bad('at', 'must be a valid Date');
}

/**
 * Builds a path from `leaf` to one of `roots` and validates it. Tries every plausible path (several issuers with
 * the same name, e.g. two roots during a rotation or a cross-signed intermediate) and returns the first that passes
 * every check; when none does, the best attempt (a complete path with the fewest problems, else the longest
 * partial one) and all of its problems.
 */
export function validateChain(options: ValidateChainOptions): ChainResult {
  checkOptions(options);
  const { leaf } = options;
  const rootList = dedupe(options.roots, new Set());
  const rootIds = new Set(rootList.map(idOf));
  const ints = dedupe(options.intermediates ?? [], new Set([...rootIds, idOf(leaf)]));
  const ctx: Context = {
    at: options.at ?? new Date(),
    purpose: options.purpose ?? 'any',
    hostname: options.hostname,
    maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH,
    acceptAnyEku: options.acceptAnyExtendedKeyUsage ?? false,
    known: new Set([...UNDERSTOOD_CRITICAL, ...(options.knownCriticalExtensions ?? [])]),
    rootsBySubject: groupBySubject(rootList),
    intsBySubject: groupBySubject(ints),
    sigCache: new Map(),
    nodes: 0,
  };

  // A leaf that is itself in the bundle is trusted as given (self-signed trust, pinned certificates).
  if (rootIds.has(idOf(leaf))) {
    const reasons = checkPath(ctx, [leaf], true);
    return reasons.length ? { ok: false, chain: [leaf], reasons } : { ok: true, chain: [leaf] };
  }
  if (rootList.length === 0) {
    return {
      ok: false,
      chain: [leaf],
      reasons: [{ code: ChainReason.UNTRUSTED_ROOT, depth: 0, message: 'the trust bundle is empty: no root can anchor the chain' }, ...checkPath(ctx, [leaf], false)],
    };
  }

  let best: { chain: Certificate[]; reasons: ChainProblem[] } | null = null;
  let bestDeadEnd: { chain: Certificate[]; reasons: ChainProblem[] } | null = null;
  let complete = 0;
  for (const { path, end } of buildPaths(ctx, [leaf], new Set([idOf(leaf)]))) {
    if (end === 'root') {
      const reasons = checkPath(ctx, path, true);
      if (reasons.length === 0) return { ok: true, chain: path };
      if (!best || reasons.length < best.reasons.length) best = { chain: path, reasons };
      if (++complete >= MAX_COMPLETE_PATHS) break;
    } else if (!best && (!bestDeadEnd || path.length > bestDeadEnd.chain.length)) {
      bestDeadEnd = { chain: path, reasons: [deadEndReason(path, end, ctx), ...checkPath(ctx, path, false)] };
    }
  }
  const result = best ?? bestDeadEnd ?? { chain: [leaf], reasons: [deadEndReason([leaf], 'noIssuer', ctx)] };
  return { ok: false, chain: result.chain, reasons: result.reasons };
}

function deadEndReason(path: Certificate[], end: PathEnd, ctx: Context): ChainProblem {
  const top = path.length - 1;
  const c = path[top]!;
  const name = who(path, top, false);
  switch (end) {
    case 'untrustedRoot':
      return { code: ChainReason.UNTRUSTED_ROOT, depth: top, message: `${name} is self-signed but not in the trust bundle` };
    case 'depth':
      return { code: ChainReason.DEPTH, depth: top, message: `no path to a root within ${ctx.maxDepth} intermediate(s) (maxDepth)` };
    default:
      return {
        code: ChainReason.NO_ISSUER,
        depth: top,
        message: `the issuer of ${name} ("${c.issuer}") is neither among the intermediates nor in the trust bundle`,
      };
  }
}

/** One line per problem, for logs and error messages. */
export function formatChainProblems(reasons: ChainProblem[]): string {
  return reasons.map((r) => `[${r.code} at depth ${r.depth}] ${r.message}`).join('; ');
}

/**
 * validateChain that throws MeshError CHAIN listing every problem (`source` names the peer or file), and returns
 * the validated chain, leaf first, root last.
 */
export function assertChain(options: ValidateChainOptions, source?: string): Certificate[] {
  const r = validateChain(options);
  if (r.ok) return r.chain;
  const subject = source ?? displayName(options.leaf);
  throw new MeshError(ErrorCodes.CHAIN, `${subject}: certificate chain is not valid: ${formatChainProblems(r.reasons)}`, {
    subject,
    details: { reasons: r.reasons, chain: r.chain.map(displayName) },
  });
}
