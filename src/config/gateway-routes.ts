import { effectiveTrafficPolicy, type ClientTls, type ConnectionPool, type DestinationRuleSpec } from './destination-rule.js';
import type { GatewayFileConfig, GatewayResource } from './gateway-file.js';
import { stringMatches } from './gateway-fields.js';
import { bestHostMatch, hostSpecificity, normalizeHost } from './gateway-host-match.js';
import type { UpstreamAddress } from './gateway-options.js';
import type { GatewayServer } from './istio-gateway.js';
import type { Destination, HttpMatch, HttpRoute, TcpRoute, TlsRoute, VirtualServiceSpec } from './virtual-service.js';

/** A server of a Gateway in the file. `id` is unique in the file (`GATEWAY/INDEX`). */
export interface ServerRef {
  id: string;
  gateway: string;
  index: number;
  server: GatewayServer;
}

/** A destination made concrete: where to connect and with which upstream TLS. */
export interface ResolvedDestination {
  /** The destination host as written (also the default SNI and SAN to verify for upstream TLS). */
  host: string;
  /** The service port (destination.port.number, else the upstream's port): selects DestinationRule port settings. */
  port: number;
  /** Where to connect: the upstream address, its port or else the service port. */
  address: { host: string; port: number };
  subset?: string;
  /** Relative weight among the route's destinations. */
  weight: number;
  /** DestinationRule TLS (absent or mode DISABLE = plain). */
  tls?: ClientTls;
  connectionPool?: ConnectionPool;
  /** Header operations of this destination (HTTP routes). */
  headers?: HttpRoute['headers'];
}

/** What the gateway knows of a request when routing it. */
export interface HttpRequestInfo {
  /** The gateway port the request arrived on. */
  port: number;
  /** Host header / :authority as sent (a port in it is ignored for host matching). */
  authority?: string;
  /** Path with an optional query string. */
  path: string;
  method?: string;
  /** `http` or `https`. */
  scheme?: string;
  /** Lowercase names. */
  headers?: Record<string, string | string[] | undefined>;
  /** The server chosen at the TLS handshake (HTTPS); absent = every server on the port (plain HTTP). */
  server?: ServerRef;
}

/** The HTTP route chosen for a request. */
export interface HttpRouteResult {
  virtualService: GatewayResource<VirtualServiceSpec>;
  route: HttpRoute;
  /** Index in the VirtualService's spec.http. */
  routeIndex: number;
  /** The match entry that held (undefined when the route has no match: everything matches). */
  match?: HttpMatch;
  destinations: ResolvedDestination[];
  /** The path to send upstream after `rewrite.uri` (query string kept). */
  upstreamPath: string;
}

/** The TLS or TCP route chosen for a PASSTHROUGH or TCP connection. */
export interface StreamRouteResult {
  virtualService: GatewayResource<VirtualServiceSpec>;
  route: TlsRoute | TcpRoute;
  kind: 'tls' | 'tcp';
  destinations: ResolvedDestination[];
}

/**
 * Pure routing over a validated gateway file: which server takes a connection (port + SNI), which VirtualService
 * route takes a request (port + Host + path + method + headers), where its destinations are. Built once per
 * config; lookups do no I/O. Host matching ignores the `:port` of Host, as Istio does; exact beats wildcard, `*` last.
 * As in Istio's gateway virtual hosts, a VirtualService applies to a server through the intersection of their hosts
 * (VS `*` on server `app.test` serves `app.test`), and VirtualServices meeting on the same domain are merged in
 * file order (the first matching route wins).
 */
export class GatewayRouter {
  private readonly servers = new Map<number, ServerRef[]>();
  private readonly drs = new Map<string, DestinationRuleSpec>();
  private readonly vhostCache = new Map<string, Array<GatewayResource<VirtualServiceSpec>>>();

  constructor(readonly config: GatewayFileConfig) {
    for (const gw of config.gateways) {
      gw.spec.servers.forEach((server, index) => {
        const list = this.servers.get(server.port.number) ?? [];
        list.push({ id: `${gw.name}/${index}`, gateway: gw.name, index, server });
        this.servers.set(server.port.number, list);
      });
    }
    for (const dr of config.destinationRules) this.drs.set(dr.spec.host, dr.spec);
  }

  /** Every port with at least one server. */
  ports(): number[] {
    return [...this.servers.keys()].sort((a, b) => a - b);
  }

  serversOnPort(port: number): ServerRef[] {
    return this.servers.get(port) ?? [];
  }

  /**
   * The server for a connection on `port` with this SNI (or Host for plain HTTP): the most specific host match.
   * Without a name, the server with host `*` if there is one, else the only server of the port, else undefined.
   */
  selectServer(port: number, name?: string): ServerRef | undefined {
    const list = this.serversOnPort(port);
    if (list.length === 0) return undefined;
    if (name === undefined || name === '') {
      return list.find((s) => s.server.hosts.includes('*')) ?? (list.length === 1 ? list[0] : undefined);
    }
    const host = normalizeHost(name);
    let best: ServerRef | undefined;
    let bestRank = -1;
    for (const s of list) {
      const m = bestHostMatch(s.server.hosts, host);
      if (m !== undefined && hostSpecificity(m) > bestRank) {
        best = s;
        bestRank = hostSpecificity(m);
      }
    }
    return best;
  }

  /** The first matching HTTP route for a request, or undefined (the gateway answers 404). */
  routeHttp(req: HttpRequestInfo): HttpRouteResult | undefined {
    const host = normalizeHost(req.authority ?? '');
    const candidates = this.virtualHostsFor(req.port, req.server, host);
    const gateways = req.server ? [req.server.gateway] : this.serversOnPort(req.port).map((s) => s.gateway);
    const q = req.path.indexOf('?');
    const path = q >= 0 ? req.path.slice(0, q) : req.path;
    const query = q >= 0 ? new URLSearchParams(req.path.slice(q + 1)) : undefined;
    for (const vs of candidates) {
      for (let i = 0; i < vs.spec.http.length; i++) {
        const route = vs.spec.http[i]!;
        const matches = route.match ?? [];
        let held: HttpMatch | undefined;
        let ok = matches.length === 0;
        for (const m of matches) {
          if (this.httpMatchHolds(m, req, path, query, gateways)) {
            held = m;
            ok = true;
            break;
          }
        }
        if (!ok) continue;
        return {
          virtualService: vs,
          route,
          routeIndex: i,
          ...(held ? { match: held } : {}),
          destinations: route.route.map((d) =>
            this.resolveDestination(d.destination, d.weight ?? 100, d.headers),
          ),
          upstreamPath: rewritePath(route, held, path, q >= 0 ? req.path.slice(q) : ''),
        };
      }
    }
    return undefined;
  }

  /**
   * The route for a PASSTHROUGH connection (by SNI: the most specific sniHosts match, file order on ties) or, when no
   * tls route matches, a TCP route; for TCP servers pass no SNI.
   */
  routeStream(port: number, sni?: string): StreamRouteResult | undefined {
    const gateways = new Set(this.serversOnPort(port).map((s) => s.gateway));
    const bound = this.config.virtualServices.filter((vs) => vs.spec.gateways.some((g) => gateways.has(g)));
    const gwOk = (list: string[] | undefined) => list === undefined || list.some((g) => gateways.has(g));
    if (sni) {
      const host = normalizeHost(sni);
      let best: { vs: GatewayResource<VirtualServiceSpec>; route: TlsRoute; rank: number } | undefined;
      for (const vs of bound) {
        for (const route of vs.spec.tls) {
          for (const m of route.match) {
            if ((m.port !== undefined && m.port !== port) || !gwOk(m.gateways)) continue;
            const hit = bestHostMatch(m.sniHosts, host);
            if (hit !== undefined && (best === undefined || hostSpecificity(hit) > best.rank)) {
              best = { vs, route, rank: hostSpecificity(hit) };
            }
          }
        }
      }
      if (best) {
        return { virtualService: best.vs, route: best.route, kind: 'tls', destinations: best.route.route.map((d) => this.resolveDestination(d.destination, d.weight ?? 100)) };
      }
    }
    for (const vs of bound) {
      for (const route of vs.spec.tcp) {
        const ms = route.match ?? [];
        if (ms.length === 0 || ms.some((m) => (m.port === undefined || m.port === port) && gwOk(m.gateways))) {
          return { virtualService: vs, route, kind: 'tcp', destinations: route.route.map((d) => this.resolveDestination(d.destination, d.weight ?? 100)) };
        }
      }
    }
    return undefined;
  }

  /** A destination made concrete with its upstream address and DestinationRule policy (the loader checked both exist). */
  resolveDestination(d: Destination, weight = 100, headers?: HttpRoute['headers']): ResolvedDestination {
    const up: UpstreamAddress | undefined = this.config.options.upstreams[d.host];
    const port = d.port?.number ?? up?.port ?? 0;
    const policy = effectiveTrafficPolicy(this.drs.get(d.host), port, d.subset);
    return {
      host: d.host,
      port,
      address: { host: up?.host ?? d.host, port: up?.port ?? port },
      ...(d.subset !== undefined ? { subset: d.subset } : {}),
      weight,
      ...(policy.tls ? { tls: policy.tls } : {}),
      ...(policy.connectionPool ? { connectionPool: policy.connectionPool } : {}),
      ...(headers ? { headers } : {}),
    };
  }

  /** VirtualServices serving `host` on this port (or server), most specific VS host first, file order on ties. */
  private virtualHostsFor(port: number, server: ServerRef | undefined, host: string): Array<GatewayResource<VirtualServiceSpec>> {
    const key = `${port}|${server?.id ?? ''}|${host}`;
    const cached = this.vhostCache.get(key);
    if (cached) return cached;
    const servers = server ? [server] : this.serversOnPort(port);
    const ranked: Array<{ vs: GatewayResource<VirtualServiceSpec>; rank: number }> = [];
    for (const vs of this.config.virtualServices) {
      if (vs.spec.http.length === 0) continue;
      // As Envoy's virtual hosts: the domain is the more specific of the VirtualService host and the server host
      // (both matching the request's host), and VirtualServices with the same domain are merged in file order.
      let rank = -1;
      for (const s of servers) {
        if (!vs.spec.gateways.includes(s.gateway)) continue;
        const sh = bestHostMatch(s.server.hosts, host);
        const vh = bestHostMatch(vs.spec.hosts, host);
        if (sh === undefined || vh === undefined) continue;
        rank = Math.max(rank, hostSpecificity(sh), hostSpecificity(vh));
      }
      if (rank >= 0) ranked.push({ vs, rank });
    }
    const best = Math.max(-1, ...ranked.map((r) => r.rank));
    const out = ranked.filter((r) => r.rank === best).map((r) => r.vs);
    if (this.vhostCache.size >= 10_000) this.vhostCache.clear();
    this.vhostCache.set(key, out);
    return out;
  }

  private httpMatchHolds(
    m: HttpMatch,
    req: HttpRequestInfo,
    path: string,
    query: URLSearchParams | undefined,
    gateways: string[],
  ): boolean {
    if (m.port !== undefined && m.port !== req.port) return false;
    if (m.gateways !== undefined && !m.gateways.some((g) => gateways.includes(g))) return false;
    if (m.uri && !stringMatches(m.uri, path, m.ignoreUriCase)) return false;
    if (m.method && !stringMatches(m.method, req.method)) return false;
    if (m.scheme && !stringMatches(m.scheme, req.scheme)) return false;
    if (m.authority && !stringMatches(m.authority, req.authority)) return false;
    if (m.headers) {
      for (const [name, sm] of Object.entries(m.headers)) {
        const v = req.headers?.[name];
        if (!stringMatches(sm, Array.isArray(v) ? v.join(',') : v)) return false;
      }
    }
    if (m.queryParams) {
      for (const [name, sm] of Object.entries(m.queryParams)) {
        if (!stringMatches(sm, query?.get(name) ?? undefined)) return false;
      }
    }
    return true;
  }
}

/** Istio's rewrite.uri: replaces the matched prefix (prefix match) or the whole path (otherwise). */
function rewritePath(route: HttpRoute, match: HttpMatch | undefined, path: string, query: string): string {
  const to = route.rewrite?.uri;
  if (to === undefined) return path + query;
  if (match?.uri?.kind === 'prefix') {
    const rest = path.slice(match.uri.value.length);
    // Istio joins "/" + "" as "/", and "/v2" + "/x" without doubling the slash.
    const joined = to.endsWith('/') && rest.startsWith('/') ? to + rest.slice(1) : to + rest;
    return (joined || '/') + query;
  }
  return to + query;
}

/** Picks one destination by weight (`random` in [0, 1)); undefined when every weight is 0. */
export function pickDestination<T extends { weight: number }>(destinations: readonly T[], random: () => number = Math.random): T | undefined {
  if (destinations.length === 1) return destinations[0];
  const total = destinations.reduce((s, d) => s + d.weight, 0);
  if (total <= 0) return undefined;
  let x = random() * total;
  for (const d of destinations) {
    if (x < d.weight) return d;
    x -= d.weight;
  }
  return destinations[destinations.length - 1];
}
