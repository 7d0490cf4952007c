// Istio's AuthorizationPolicy evaluated at the gateway, per request: any matching DENY policy denies; then, when
// there is at least one ALLOW policy, the request must match one of them; with no ALLOW policy it is allowed.
// Policies are compiled once per config (CIDRs into BlockLists, values into matchers), so a request costs a few
// string compares.
import { BlockList, isIP } from 'node:net';
import type {
  AuthorizationCondition,
  AuthorizationOperation,
  AuthorizationPolicySpec,
  AuthorizationRule,
  AuthorizationSource,
  GatewayResource,
} from '../config/index.js';
import type { ConnectionContext } from './connection-context.js';

/** What a request looks like to a policy. */
export interface RequestFacts {
  /** The verified peer SPIFFE ID without `spiffe://` (`cluster.local/ns/NS/sa/SA`), or '' when there is none. */
  principal: string;
  /** The client address (the gateway sees no proxy chain in front of it). */
  remoteAddress: string;
  /** The gateway server port the request came in on. */
  port: number;
  /** Host or :authority, any `:port` removed, lower case. */
  host: string;
  /** Path without the query. */
  path: string;
  method: string;
  sni: string | undefined;
  /** Request headers, lower-case names (as Node gives them). */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export type AuthorizationVerdict =
  | { allowed: true; /** the ALLOW policy that matched, when there are ALLOW policies */ policy?: string }
  | { allowed: false; /** what the log and metric say */ reason: string; policy?: string };

type Pred = (f: RequestFacts) => boolean;

/** Istio's value match: exact, `prefix*`, `*suffix`, or `*` (present: any non-empty value). */
export function valueMatches(pattern: string, value: string, caseInsensitive = false): boolean {
  const p = caseInsensitive ? pattern.toLowerCase() : pattern;
  const v = caseInsensitive ? value.toLowerCase() : value;
  if (p === '*') return v.length > 0;
  if (p.endsWith('*')) return v.startsWith(p.slice(0, -1));
  if (p.startsWith('*')) return v.endsWith(p.slice(1));
  return p === v;
}

function anyOf(patterns: readonly string[], caseInsensitive = false): (value: string) => boolean {
  return (value) => patterns.some((p) => valueMatches(p, value, caseInsensitive));
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [ip, bits] = c.split('/') as [string, string | undefined];
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(ip, family);
    else list.addSubnet(ip, Number(bits), family);
  }
  return list;
}

function inBlocks(list: BlockList, address: string): boolean {
  // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const ip = mapped ? mapped[1]! : address;
  const family = isIP(ip);
  if (family === 0) return false;
  return list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
}

/** The namespace of a principal `td/ns/NS/sa/SA`, or ''. */
function namespaceOf(principal: string): string {
  const m = /^[^/]+\/ns\/([^/]+)\//.exec(principal);
  return m ? m[1]! : '';
}

/** Both a positive list (one must match) and a negative list (none may match) on one value. */
function field(
  get: (f: RequestFacts) => string,
  yes: readonly string[] | undefined,
  no: readonly string[] | undefined,
  caseInsensitive = false,
): Pred[] {
  const out: Pred[] = [];
  if (yes) {
    const m = anyOf(yes, caseInsensitive);
    out.push((f) => m(get(f)));
  }
  if (no) {
    const m = anyOf(no, caseInsensitive);
    out.push((f) => !m(get(f)));
  }
  return out;
}

function blocks(yes: readonly string[] | undefined, no: readonly string[] | undefined): Pred[] {
  const out: Pred[] = [];
  if (yes) {
    const l = blockList(yes);
    out.push((f) => inBlocks(l, f.remoteAddress));
  }
  if (no) {
    const l = blockList(no);
    out.push((f) => !inBlocks(l, f.remoteAddress));
  }
  return out;
}

const all = (preds: Pred[]): Pred => (f) => preds.every((p) => p(f));

function compileSource(s: AuthorizationSource): Pred {
  return all([
    ...field((f) => f.principal, s.principals, s.notPrincipals),
    ...field((f) => namespaceOf(f.principal), s.namespaces, s.notNamespaces),
    ...blocks(s.ipBlocks, s.notIpBlocks),
    ...blocks(s.remoteIpBlocks, s.notRemoteIpBlocks),
  ]);
}

function compileOperation(o: AuthorizationOperation): Pred {
  return all([
    ...field((f) => f.host, o.hosts, o.notHosts, true),
    ...field((f) => String(f.port), o.ports, o.notPorts),
    ...field((f) => f.method, o.methods, o.notMethods),
    ...field((f) => f.path, o.paths, o.notPaths),
  ]);
}

function headerValue(f: RequestFacts, name: string): string {
  const v = f.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : (v ?? '');
}

function compileCondition(c: AuthorizationCondition): Pred {
  const key = c.key;
  const ipKey = key === 'source.ip' || key === 'remote.ip';
  if (ipKey) return all(blocks(c.values, c.notValues));
  const header = /^request\.headers\[(.+)\]$/.exec(key);
  const get: (f: RequestFacts) => string = header
    ? (f) => headerValue(f, header[1]!)
    : key === 'source.namespace'
      ? (f) => namespaceOf(f.principal)
      : key === 'source.principal'
        ? (f) => f.principal
        : key === 'destination.port'
          ? (f) => String(f.port)
          : (f) => f.sni ?? ''; // connection.sni: the schema admits no other key
  return all(field(get, c.values, c.notValues));
}

function compileRule(r: AuthorizationRule): Pred {
  const from = r.from?.map((x) => compileSource(x.source));
  const to = r.to?.map((x) => compileOperation(x.operation));
  const when = (r.when ?? []).map(compileCondition);
  return (f) => (!from || from.some((p) => p(f))) && (!to || to.some((p) => p(f))) && when.every((p) => p(f));
}

interface CompiledPolicy {
  name: string;
  /** Index of the first matching rule, or -1. An empty rule list matches nothing. */
  match(f: RequestFacts): number;
}

function compilePolicy(p: GatewayResource<AuthorizationPolicySpec>): CompiledPolicy {
  const rules = p.spec.rules.map(compileRule);
  const name = p.namespace ? `${p.namespace}/${p.name}` : p.name;
  return { name, match: (f) => rules.findIndex((r) => r(f)) };
}

/** The gateway's authorization: compiled from the AuthorizationPolicy documents of the gateway file. */
export class AuthorizationEngine {
  readonly #deny: CompiledPolicy[];
  readonly #allow: CompiledPolicy[];

  constructor(policies: ReadonlyArray<GatewayResource<AuthorizationPolicySpec>>) {
    this.#deny = policies.filter((p) => p.spec.action === 'DENY').map(compilePolicy);
    this.#allow = policies.filter((p) => p.spec.action === 'ALLOW').map(compilePolicy);
  }

  /** True when no policy is configured: callers may skip building RequestFacts. */
  get empty(): boolean {
    return this.#deny.length === 0 && this.#allow.length === 0;
  }

  evaluate(f: RequestFacts): AuthorizationVerdict {
    for (const p of this.#deny) {
      const rule = p.match(f);
      if (rule >= 0) return { allowed: false, policy: p.name, reason: `denied by DENY policy ${p.name} (rule ${rule + 1})` };
    }
    if (this.#allow.length === 0) return { allowed: true };
    for (const p of this.#allow) if (p.match(f) >= 0) return { allowed: true, policy: p.name };
    const who = f.principal ? `principal ${f.principal}` : 'a caller without a verified identity';
    return { allowed: false, reason: `no ALLOW policy matches ${who} for ${f.method} ${f.host}${f.path}` };
  }
}

/** `spiffe://td/ns/a/sa/b` → `td/ns/a/sa/b`, the form Istio's principals use; '' for none. */
export function principalOf(spiffeId: string | undefined): string {
  return spiffeId ? spiffeId.replace(/^spiffe:\/\//, '') : '';
}

const ALLOWED: AuthorizationVerdict = Object.freeze({ allowed: true }) as AuthorizationVerdict;

/** Evaluates one HTTP request of a connection; free when the gateway file has no AuthorizationPolicy. */
export function authorizeRequest(
  engine: AuthorizationEngine,
  ctx: ConnectionContext,
  authority: string,
  path: string,
  method: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
): AuthorizationVerdict {
  if (engine.empty) return ALLOWED;
  return engine.evaluate({
    principal: principalOf(ctx.peer?.spiffeId),
    remoteAddress: ctx.remoteAddress,
    port: ctx.listenerPort,
    host: hostWithoutPort(authority),
    path: pathWithoutQuery(path),
    method,
    sni: ctx.serverName,
    headers,
  });
}

/** `Host`/`:authority` without its port, lower case (`[::1]:8443` → `[::1]`), as policies match hosts. */
export function hostWithoutPort(authority: string): string {
  const a = authority.toLowerCase();
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    return end < 0 ? a : a.slice(0, end + 1);
  }
  const colon = a.lastIndexOf(':');
  return colon < 0 ? a : a.slice(0, colon);
}

function pathWithoutQuery(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}
