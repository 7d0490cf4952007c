import {
  GatewayRouter,
  normalizeHost,
  pickDestination,
  type GatewayFileConfig,
  type HttpRouteResult,
  type ResolvedDestination,
  type ServerRef,
} from '../config/index.js';
import type { UpstreamPlan } from './upstream-pool.js';

/** What the proxy needs of a request to route it (names lowercased; the Host/:authority port is ignored). */
export interface RouteRequest {
  port: number;
  server: ServerRef | undefined;
  authority: string;
  path: string;
  method: string;
  scheme: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A routed request: the route, the destination picked by weight and how to reach it. */
export interface RoutedRequest {
  route: HttpRouteResult;
  destination: ResolvedDestination;
  plan: UpstreamPlan;
  /** Pool key of the plan (address + TLS settings). */
  poolKey: string;
}

export interface RouteTableDefaults {
  connectTimeoutMs: number;
  upstreamIdleTimeoutMs: number;
}

/**
 * VirtualService routing for the HTTP proxy, over the config folder's GatewayRouter (Istio's matching: host
 * ignoring `:port`, exact before wildcard before `*`; uri exact/prefix/regex, method, headers, query; rewrite), plus
 * what the proxy adds per destination: an UpstreamPlan (address, TLS origination from the DestinationRule,
 * HTTP/2 policy, timeouts), computed once per destination and config, not per request.
 */
export class RouteTable {
  readonly router: GatewayRouter;
  readonly #plans = new Map<string, { plan: UpstreamPlan; key: string }>();
  readonly #serverCache = new Map<string, ServerRef | undefined>();

  constructor(
    readonly config: GatewayFileConfig,
    private readonly defaults: RouteTableDefaults,
  ) {
    this.router = new GatewayRouter(config);
    for (const vs of config.virtualServices) {
      for (const r of vs.spec.http) for (const d of r.route) this.plan(this.router.resolveDestination(d.destination, d.weight ?? 100, d.headers));
    }
  }

  /** The Gateway server a connection belongs to (by port and SNI), cached. */
  server(port: number, serverName: string | undefined): ServerRef | undefined {
    const k = `${port}|${serverName ?? ''}`;
    if (this.#serverCache.has(k)) return this.#serverCache.get(k);
    const s = serverName === undefined ? undefined : this.router.selectServer(port, serverName);
    if (this.#serverCache.size > 10_000) this.#serverCache.clear();
    this.#serverCache.set(k, s);
    return s;
  }

  /** Routes a request; undefined = no route (404). A route whose weights are all 0 also gives undefined. */
  route(req: RouteRequest): RoutedRequest | undefined {
    const route = this.router.routeHttp(req);
    if (!route) return undefined;
    const destination = pickDestination(route.destinations);
    if (!destination) return undefined;
    const { plan, key } = this.plan(destination);
    return { route, destination, plan, poolKey: key };
  }

  /** Every pool key the current config can use (to close the pools of a previous config). */
  poolKeys(): Set<string> {
    return new Set([...this.#plans.values()].map((p) => p.key));
  }

  plan(d: ResolvedDestination): { plan: UpstreamPlan; key: string } {
    const id = `${d.host}|${d.port}|${d.subset ?? ''}`;
    let p = this.#plans.get(id);
    if (!p) {
      const tls = d.tls && d.tls.mode !== 'DISABLE' ? d.tls : undefined;
      const pool = d.connectionPool;
      const h2 = pool?.http?.h2UpgradePolicy === 'UPGRADE' ? 'always' : pool?.http?.useClientProtocol ? 'client' : 'never';
      const plan: UpstreamPlan = {
        destination: d.host,
        address: d.address,
        label: `${d.address.host.includes(':') ? `[${d.address.host}]` : d.address.host}:${d.address.port}`,
        tls,
        http2: h2,
        connectTimeoutMs: pool?.tcp?.connectTimeout ?? this.defaults.connectTimeoutMs,
        idleTimeoutMs: pool?.http?.idleTimeout || pool?.tcp?.idleTimeout || this.defaults.upstreamIdleTimeoutMs,
        maxConnections: pool?.tcp?.maxConnections,
        maxRequests: pool?.http?.http2MaxRequests,
        maxPendingRequests: pool?.http?.http1MaxPendingRequests,
        maxRetries: pool?.http?.maxRetries,
        maxRequestsPerConnection: pool?.http?.maxRequestsPerConnection,
        trustDomain: this.config.options.trustDomain,
      };
      p = { plan, key: `${id}|${plan.label}|${JSON.stringify(tls ?? null)}|${h2}|${plan.maxConnections ?? ''}` };
      // Istio writes 0 for "unset" in some generated DestinationRules: Envoy then applies its defaults, never 0.
      for (const k of ['maxRequests', 'maxPendingRequests', 'maxRetries', 'maxRequestsPerConnection'] as const) if (plan[k] === 0) plan[k] = undefined;
      this.#plans.set(id, p);
    }
    return p;
  }
}

export { normalizeHost };
