import { isIP } from 'node:net';
import type { AuthorizationCondition, AuthorizationOperation, AuthorizationPolicySpec, AuthorizationSource } from './authorization-policy.js';
import { effectiveTrafficPolicy, type ClientTls, type DestinationRuleSpec } from './destination-rule.js';
import type { GatewayFileConfig, GatewayResource } from './gateway-file.js';
import type { StringMatch } from './gateway-fields.js';
import { hostMatches, hostSpecificity } from './gateway-host-match.js';
import type { GatewayServer, GatewaySpec } from './istio-gateway.js';
import type { TlsVersionName } from './gateway-tls-names.js';
import { DEFAULT_RETRY_ON, parseRetryOn } from './retry-on.js';
import type { Destination, HttpMatch, HttpRoute, RouteDestination, HttpRouteDestination, VirtualServiceSpec } from './virtual-service.js';

/**
 * An Envoy v3 Bootstrap for the Gateway resources of a gateway file, with certificates from meshcert's SDS server
 * (`kubernetes://NAME`, `kubernetes://NAME-cacert`; `default` and `ROOTCA` for ISTIO_MUTUAL). Pure: the caller
 * gives each credential's stapling policy (from the secrets folder) and where SDS is. Field names are Envoy's
 * proto names (snake_case), as in Envoy's documentation.
 */

export type EnvoyStaplePolicyName = 'LENIENT_STAPLING' | 'STRICT_STAPLING' | 'MUST_STAPLE';

/** Where Envoy reaches meshcert's SDS: a Unix socket (plain gRPC), or TCP with TLS (files are referenced, not inlined). */
export type SdsEndpoint =
  | { kind: 'uds'; path: string }
  | { kind: 'tcp'; host: string; port: number; caFile: string; certFile?: string; keyFile?: string; serverName?: string };

export interface EnvoyBootstrapInput {
  config: GatewayFileConfig;
  /** Envoy's ocsp_staple_policy per credentialName; absent = LENIENT_STAPLING. */
  staplePolicies: Readonly<Record<string, EnvoyStaplePolicyName>>;
  sds: SdsEndpoint;
  /**
   * Where ISTIO_MUTUAL's workload identity (`default`) and trust bundle (`ROOTCA`) come from, e.g. meshcert agent's
   * socket; absent = the same SDS as the gateway secrets.
   */
  workloadSds?: SdsEndpoint;
  nodeId?: string;
  nodeCluster?: string;
  /** CA bundle for upstream TLS without a CA of its own (DestinationRule SIMPLE with no credentialName/caCertificates). */
  systemCaFile?: string;
}

export interface EnvoyBootstrapResult {
  /** The Bootstrap as a plain object (proto field names), ready for YAML or JSON. */
  bootstrap: Record<string, unknown>;
  /** What could not be expressed for Envoy, or was changed to fit it. */
  warnings: string[];
}

type Obj = Record<string, unknown>;

export const SDS_CLUSTER_NAME = 'meshcert-sds';
const TYPE = 'type.googleapis.com/';
const ENVOY_TLS_VERSION: Record<TlsVersionName, string> = {
  TLS_AUTO: 'TLS_AUTO',
  TLSV1_0: 'TLSv1_0',
  TLSV1_1: 'TLSv1_1',
  TLSV1_2: 'TLSv1_2',
  TLSV1_3: 'TLSv1_3',
};

/** Milliseconds as a proto3 JSON Duration ("1.5s"). */
export function protoDuration(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(3).replace(/0+$/, '')}s`;
}

/** Istio's cluster name for a destination: `outbound|PORT|SUBSET|HOST`. */
export function clusterName(host: string, port: number, subset?: string): string {
  return `outbound|${port}|${subset ?? ''}|${host}`;
}

export const WORKLOAD_SDS_CLUSTER_NAME = 'meshcert-workload-sds';

function sdsSecret(name: string, cluster = SDS_CLUSTER_NAME): Obj {
  return {
    name,
    sds_config: {
      resource_api_version: 'V3',
      api_config_source: {
        api_type: 'GRPC',
        transport_api_version: 'V3',
        set_node_on_first_message_only: true,
        grpc_services: [{ envoy_grpc: { cluster_name: cluster } }],
      },
    },
  };
}

function sanMatcher(san: string): Obj {
  const type = /^[a-z][a-z0-9+.-]*:\/\//i.test(san) ? 'URI' : isIP(san) ? 'IP_ADDRESS' : san.includes('@') ? 'EMAIL' : 'DNS';
  return { san_type: type, matcher: { exact: san } };
}

function envoyStringMatch(m: StringMatch): Obj {
  switch (m.kind) {
    case 'exact':
      return { exact: m.value };
    case 'prefix':
      return { prefix: m.value };
    case 'regex':
      return { safe_regex: { regex: m.value } };
    case 'present':
      return { safe_regex: { regex: '.*' } };
  }
}

/** Istio's `*` convention (whole value, prefix or suffix) as an Envoy StringMatcher. */
function wildcardMatcher(v: string, prefix = '', ignoreCase = false): Obj {
  const ic = ignoreCase ? { ignore_case: true } : {};
  if (v === '*') return { safe_regex: { regex: '.+' } };
  if (v.endsWith('*')) return { prefix: prefix + v.slice(0, -1), ...ic };
  if (v.startsWith('*')) return { suffix: v.slice(1), ...ic };
  return { exact: prefix + v, ...ic };
}

function cidr(block: string): Obj {
  const [ip, bits] = block.split('/');
  return { address_prefix: ip, prefix_len: bits === undefined ? (isIP(ip!) === 4 ? 32 : 128) : Number(bits) };
}

const anyOf = <T extends Obj>(key: 'or_rules' | 'or_ids', list: T[]): Obj =>
  list.length === 1 ? list[0]! : key === 'or_rules' ? { or_rules: { rules: list } } : { or_ids: { ids: list } };
const allOf = (key: 'and_rules' | 'and_ids', list: Obj[]): Obj =>
  list.length === 0 ? { any: true } : list.length === 1 ? list[0]! : key === 'and_rules' ? { and_rules: { rules: list } } : { and_ids: { ids: list } };

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
function namespaceRegex(ns: string): string {
  const part = ns === '*' ? '[^/]+' : ns.endsWith('*') ? `${escapeRe(ns.slice(0, -1))}[^/]*` : ns.startsWith('*') ? `[^/]*${escapeRe(ns.slice(1))}` : escapeRe(ns);
  return `spiffe://[^/]+/ns/${part}/.*`;
}

const principalId = (p: string): Obj => ({ authenticated: { principal_name: wildcardMatcher(p, 'spiffe://') } });
const namespaceId = (ns: string): Obj => ({ authenticated: { principal_name: { safe_regex: { regex: namespaceRegex(ns) } } } });
const header = (name: string, v: string, ignoreCase = false): Obj => ({ header: { name, string_match: wildcardMatcher(v, '', ignoreCase) } });

function sourceIds(s: AuthorizationSource): Obj[] {
  const ids: Obj[] = [];
  const add = (values: string[] | undefined, make: (v: string) => Obj, negate = false) => {
    if (!values || values.length === 0) return;
    const one = anyOf('or_ids', values.map(make));
    ids.push(negate ? { not_id: one } : one);
  };
  add(s.principals, principalId);
  add(s.notPrincipals, principalId, true);
  add(s.namespaces, namespaceId);
  add(s.notNamespaces, namespaceId, true);
  add(s.ipBlocks, (b) => ({ direct_remote_ip: cidr(b) }));
  add(s.notIpBlocks, (b) => ({ direct_remote_ip: cidr(b) }), true);
  add(s.remoteIpBlocks, (b) => ({ remote_ip: cidr(b) }));
  add(s.notRemoteIpBlocks, (b) => ({ remote_ip: cidr(b) }), true);
  return ids;
}

function operationRules(o: AuthorizationOperation): Obj[] {
  const rules: Obj[] = [];
  const add = (values: string[] | undefined, make: (v: string) => Obj, negate = false) => {
    if (!values || values.length === 0) return;
    const one = anyOf('or_rules', values.map(make));
    rules.push(negate ? { not_rule: one } : one);
  };
  add(o.hosts, (h) => header(':authority', h, true));
  add(o.notHosts, (h) => header(':authority', h, true), true);
  add(o.ports, (p) => ({ destination_port: Number(p) }));
  add(o.notPorts, (p) => ({ destination_port: Number(p) }), true);
  add(o.methods, (m) => header(':method', m));
  add(o.notMethods, (m) => header(':method', m), true);
  add(o.paths, (p) => ({ url_path: { path: wildcardMatcher(p) } }));
  add(o.notPaths, (p) => ({ url_path: { path: wildcardMatcher(p) } }), true);
  return rules;
}

/** A `when` condition: on the principal side (who) or the permission side (what). */
function condition(c: AuthorizationCondition): { side: 'id' | 'rule'; value: Obj } {
  const key = c.key;
  const hdr = /^request\.headers\[([^\]]+)\]$/.exec(key)?.[1];
  let side: 'id' | 'rule';
  let make: (v: string) => Obj;
  if (key === 'source.ip') [side, make] = ['id', (v) => ({ direct_remote_ip: cidr(v) })];
  else if (key === 'remote.ip') [side, make] = ['id', (v) => ({ remote_ip: cidr(v) })];
  else if (key === 'source.namespace') [side, make] = ['id', namespaceId];
  else if (key === 'source.principal') [side, make] = ['id', principalId];
  else if (key === 'destination.port') [side, make] = ['rule', (v) => ({ destination_port: Number(v) })];
  else if (key === 'connection.sni') [side, make] = ['rule', (v) => ({ requested_server_name: wildcardMatcher(v) })];
  else [side, make] = ['rule', (v) => header(hdr!, v)];
  const parts: Obj[] = [];
  const or = side === 'id' ? 'or_ids' : 'or_rules';
  if (c.values?.length) parts.push(anyOf(or, c.values.map(make)));
  if (c.notValues?.length) parts.push(side === 'id' ? { not_id: anyOf(or, c.notValues.map(make)) } : { not_rule: anyOf(or, c.notValues.map(make)) });
  return { side, value: allOf(side === 'id' ? 'and_ids' : 'and_rules', parts) };
}

/** AuthorizationPolicies as Envoy RBAC HTTP filters: DENY first, then ALLOW (only when an ALLOW policy exists). */
function rbacFilters(policies: Array<GatewayResource<AuthorizationPolicySpec>>): Obj[] {
  const filters: Obj[] = [];
  for (const action of ['DENY', 'ALLOW'] as const) {
    const mine = policies.filter((p) => p.spec.action === action);
    if (mine.length === 0) continue;
    const rbacPolicies: Obj = {};
    for (const p of mine) {
      p.spec.rules.forEach((rule, i) => {
        const ids: Obj[] = [];
        const perms: Obj[] = [];
        if (rule.from?.length) ids.push(anyOf('or_ids', rule.from.map((f) => allOf('and_ids', sourceIds(f.source)))));
        if (rule.to?.length) perms.push(anyOf('or_rules', rule.to.map((t) => allOf('and_rules', operationRules(t.operation)))));
        for (const c of rule.when ?? []) {
          const { side, value } = condition(c);
          (side === 'id' ? ids : perms).push(value);
        }
        rbacPolicies[`ns[${p.namespace ?? 'default'}]-policy[${p.name}]-rule[${i}]`] = {
          permissions: [allOf('and_rules', perms)],
          principals: [allOf('and_ids', ids)],
        };
      });
    }
    filters.push({
      name: 'envoy.filters.http.rbac',
      typed_config: { '@type': `${TYPE}envoy.extensions.filters.http.rbac.v3.RBAC`, rules: { action, policies: rbacPolicies } },
    });
  }
  return filters;
}

interface ChainServer {
  gateway: GatewayResource<GatewaySpec>;
  index: number;
  server: GatewayServer;
}

/** Builds the Bootstrap. Throws nothing for a validated config; what Envoy cannot express is in `warnings`. */
export function buildEnvoyBootstrap(input: EnvoyBootstrapInput): EnvoyBootstrapResult {
  const { config } = input;
  const opts = config.options;
  const warnings: string[] = [];
  const clusters = new Map<string, Obj>();
  const drs = new Map<string, DestinationRuleSpec>(config.destinationRules.map((d) => [d.spec.host, d.spec]));
  const systemCa = input.systemCaFile ?? '/etc/ssl/certs/ca-certificates.crt';
  const workloadCluster = input.workloadSds ? WORKLOAD_SDS_CLUSTER_NAME : SDS_CLUSTER_NAME;
  let workloadUsed = false;

  const upstreamTls = (tls: ClientTls | undefined, host: string): Obj | undefined => {
    if (!tls || tls.mode === 'DISABLE') return undefined;
    const common: Obj = {};
    const sans = tls.subjectAltNames?.map(sanMatcher) ?? [];
    if (tls.mode === 'ISTIO_MUTUAL') {
      workloadUsed = true;
      common.tls_certificate_sds_secret_configs = [sdsSecret('default', workloadCluster)];
      common.combined_validation_context = {
        default_validation_context: { match_typed_subject_alt_names: sans.length ? sans : [{ san_type: 'URI', matcher: { prefix: `spiffe://${opts.trustDomain}/` } }] },
        validation_context_sds_secret_config: sdsSecret('ROOTCA', workloadCluster),
      };
    } else {
      if (tls.mode === 'MUTUAL' && tls.credentialName) common.tls_certificate_sds_secret_configs = [sdsSecret(`kubernetes://${tls.credentialName}`)];
      if (tls.mode === 'MUTUAL' && tls.clientCertificate) {
        common.tls_certificates = [{ certificate_chain: { filename: tls.clientCertificate }, private_key: { filename: tls.privateKey } }];
      }
      const defaultVc: Obj = tls.insecureSkipVerify ? {} : { match_typed_subject_alt_names: sans.length ? sans : [sanMatcher(tls.sni ?? host)] };
      if (tls.credentialName && !tls.insecureSkipVerify) {
        common.combined_validation_context = { default_validation_context: defaultVc, validation_context_sds_secret_config: sdsSecret(`kubernetes://${tls.credentialName}-cacert`) };
      } else if (!tls.insecureSkipVerify) {
        common.validation_context = {
          ...defaultVc,
          trusted_ca: { filename: tls.caCertificates ?? systemCa },
          ...(tls.caCrl ? { crl: { filename: tls.caCrl } } : {}),
        };
      }
    }
    return {
      name: 'envoy.transport_sockets.tls',
      typed_config: { '@type': `${TYPE}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`, sni: tls.sni ?? host, common_tls_context: common },
    };
  };

  /** The cluster of a destination (made once); returns its name. */
  const cluster = (d: Destination): string => {
    const up = opts.upstreams[d.host]!;
    const port = d.port?.number ?? up.port!;
    const name = clusterName(d.host, port, d.subset);
    if (clusters.has(name)) return name;
    const policy = effectiveTrafficPolicy(drs.get(d.host), port, d.subset);
    const pool = policy.connectionPool;
    const c: Obj = {
      name,
      type: isIP(up.host) ? 'STATIC' : 'STRICT_DNS',
      connect_timeout: protoDuration(pool?.tcp?.connectTimeout ?? opts.timeouts.upstreamConnect),
      load_assignment: {
        cluster_name: name,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: up.host, port_value: up.port ?? port } } } }] }],
      },
    };
    const ts = upstreamTls(policy.tls, d.host);
    if (ts) c.transport_socket = ts;
    if (
      pool?.tcp?.maxConnections !== undefined ||
      pool?.http?.http2MaxRequests !== undefined ||
      pool?.http?.http1MaxPendingRequests !== undefined ||
      pool?.http?.maxRetries !== undefined
    ) {
      c.circuit_breakers = {
        thresholds: [
          {
            ...(pool.tcp?.maxConnections !== undefined ? { max_connections: pool.tcp.maxConnections } : {}),
            ...(pool.http?.http1MaxPendingRequests !== undefined ? { max_pending_requests: pool.http.http1MaxPendingRequests } : {}),
            ...(pool.http?.http2MaxRequests !== undefined ? { max_requests: pool.http.http2MaxRequests } : {}),
            ...(pool.http?.maxRetries !== undefined ? { max_retries: pool.http.maxRetries } : {}),
          },
        ],
      };
    }
    const h = pool?.http;
    const maxDuration = pool?.tcp?.maxConnectionDuration;
    if (
      (h && (h.idleTimeout !== undefined || h.useClientProtocol || h.h2UpgradePolicy === 'UPGRADE' || h.maxRequestsPerConnection !== undefined || h.maxConcurrentStreams !== undefined)) ||
      maxDuration
    ) {
      const common: Obj = {};
      if (h?.idleTimeout !== undefined) common.idle_timeout = protoDuration(h.idleTimeout);
      if (h?.maxRequestsPerConnection) common.max_requests_per_connection = h.maxRequestsPerConnection;
      if (maxDuration) common.max_connection_duration = protoDuration(maxDuration);
      const h2Options = h?.maxConcurrentStreams ? { max_concurrent_streams: h.maxConcurrentStreams } : {};
      c.typed_extension_protocol_options = {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': `${TYPE}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`,
          ...(Object.keys(common).length ? { common_http_protocol_options: common } : {}),
          ...(h?.useClientProtocol
            ? { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: h2Options } }
            : h?.h2UpgradePolicy === 'UPGRADE'
              ? { explicit_http_config: { http2_protocol_options: h2Options } }
              : { explicit_http_config: { http_protocol_options: {} } }),
        },
      };
    }
    clusters.set(name, c);
    return name;
  };

  const headerOps = (ops: HttpRoute['headers'] | undefined, target: Obj) => {
    for (const side of ['request', 'response'] as const) {
      const o = ops?.[side];
      if (!o) continue;
      const add = [
        ...Object.entries(o.set ?? {}).map(([key, value]) => ({ header: { key, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' })),
        ...Object.entries(o.add ?? {}).map(([key, value]) => ({ header: { key, value }, append_action: 'APPEND_IF_EXISTS_OR_ADD' })),
      ];
      const addKey = `${side}_headers_to_add`;
      const removeKey = `${side}_headers_to_remove`;
      if (add.length) target[addKey] = [...((target[addKey] as Obj[] | undefined) ?? []), ...add];
      if (o.remove?.length) target[removeKey] = [...((target[removeKey] as string[] | undefined) ?? []), ...o.remove];
    }
  };

  const routeAction = (route: HttpRoute, match: HttpMatch | undefined): Obj => {
    const action: Obj = {};
    const dests = weighted(route.route);
    if (dests.length === 1) action.cluster = cluster(dests[0]!.destination);
    else {
      action.weighted_clusters = {
        clusters: dests.map((d: HttpRouteDestination) => {
          const w: Obj = { name: cluster(d.destination), weight: d.weight ?? 0 };
          headerOps(d.headers, w);
          return w;
        }),
      };
    }
    const timeout = route.timeout ?? opts.timeouts.request;
    action.timeout = protoDuration(timeout);
    if (route.rewrite?.uri !== undefined) {
      if (match?.uri?.kind === 'prefix' || match?.uri === undefined) action.prefix_rewrite = route.rewrite.uri;
      else action.regex_rewrite = { pattern: { regex: '^.*$' }, substitution: route.rewrite.uri };
    }
    if (route.rewrite?.authority !== undefined) action.host_rewrite_literal = route.rewrite.authority;
    if (route.retries && route.retries.attempts > 0) {
      // As istiod does: status numbers in retryOn become retriable_status_codes (Envoy's retry_on has no numbers).
      const retryOn = route.retries.retryOn ?? DEFAULT_RETRY_ON;
      const words = retryOn.split(',').map((w) => w.trim()).filter((w) => w && !/^\d{3}$/.test(w));
      const { statuses } = parseRetryOn(retryOn);
      if (statuses.size && !words.includes('retriable-status-codes')) words.push('retriable-status-codes');
      action.retry_policy = {
        num_retries: route.retries.attempts,
        retry_on: words.join(','),
        ...(statuses.size ? { retriable_status_codes: [...statuses] } : {}),
        ...(route.retries.perTryTimeout ? { per_try_timeout: protoDuration(route.retries.perTryTimeout) } : {}),
      };
    }
    return action;
  };

  const envoyRoutes = (route: HttpRoute, port: number, gateways: Set<string>): Obj[] => {
    const matches = route.match && route.match.length > 0 ? route.match : [undefined];
    const out: Obj[] = [];
    for (const m of matches) {
      if (m?.port !== undefined && m.port !== port) continue;
      if (m?.gateways && !m.gateways.some((g) => gateways.has(g))) continue;
      const match: Obj = {};
      const uri = m?.uri;
      if (!uri || uri.kind === 'present') match.prefix = '/';
      else if (uri.kind === 'exact') match.path = uri.value;
      else if (uri.kind === 'prefix') match.prefix = uri.value;
      else match.safe_regex = { regex: uri.value };
      if (m?.ignoreUriCase) match.case_sensitive = false;
      const headers: Obj[] = [];
      for (const [name, sm] of Object.entries(m?.headers ?? {})) {
        headers.push(sm.kind === 'present' ? { name, present_match: true } : { name, string_match: envoyStringMatch(sm) });
      }
      if (m?.method) headers.push({ name: ':method', string_match: envoyStringMatch(m.method) });
      if (m?.authority) headers.push({ name: ':authority', string_match: envoyStringMatch(m.authority) });
      if (m?.scheme) headers.push({ name: ':scheme', string_match: envoyStringMatch(m.scheme) });
      if (headers.length) match.headers = headers;
      const qp = Object.entries(m?.queryParams ?? {}).map(([name, sm]) => (sm.kind === 'present' ? { name, present_match: true } : { name, string_match: envoyStringMatch(sm) }));
      if (qp.length) match.query_parameters = qp;
      const r: Obj = { match, route: routeAction(route, m) };
      if (route.name) r.name = route.name;
      headerOps(route.headers, r);
      // One destination: its own header changes go on the route (several: on each weighted cluster).
      const dests = weighted(route.route);
      if (dests.length === 1) headerOps(dests[0]!.headers, r);
      out.push(r);
    }
    return out;
  };

  /** Virtual hosts for HTTP servers: domains = VS hosts ∩ server hosts; routes of every VS for a domain, in file order. */
  const routeConfig = (name: string, servers: ChainServer[], port: number): Obj => {
    const domains = new Map<string, Obj[]>();
    const redirect = new Set<string>();
    const gateways = new Set(servers.map((s) => s.gateway.name));
    for (const s of servers) if (s.server.tls?.httpsRedirect) for (const h of s.server.hosts) redirect.add(h);
    for (const vs of config.virtualServices) {
      if (!vs.spec.gateways.some((g) => gateways.has(g)) || vs.spec.http.length === 0) continue;
      const serverHosts = servers.filter((s) => vs.spec.gateways.includes(s.gateway.name)).flatMap((s) => s.server.hosts);
      for (const vh of vs.spec.hosts) {
        for (const sh of serverHosts) {
          const domain = hostMatches(sh, vh) ? vh : hostMatches(vh, sh) ? sh : undefined;
          if (domain === undefined) continue;
          const list = domains.get(domain) ?? [];
          if (list.length > 0 && (list as Array<Obj & { _vs?: string }>).some((r) => r._vs === vs.name)) continue;
          for (const r of vs.spec.http) for (const er of envoyRoutes(r, port, gateways)) list.push(Object.assign(er, { _vs: vs.name }));
          domains.set(domain, list);
        }
      }
    }
    for (const h of redirect) if (!domains.has(h)) domains.set(h, []);
    const virtualHosts = [...domains.entries()]
      .sort((a, b) => hostSpecificity(b[0]) - hostSpecificity(a[0]))
      .map(([domain, routes]) => {
        const vhost: Obj = {
          name: `${domain}:${port}`,
          domains: [domain],
          routes: routes.map(({ _vs, ...r }) => r),
        };
        // The server that owns this domain (its most specific host) decides on the redirect.
        let owner: ChainServer | undefined;
        let rank = -1;
        for (const s of servers) {
          for (const h of s.server.hosts) {
            if (hostMatches(h, domain) && hostSpecificity(h) > rank) [owner, rank] = [s, hostSpecificity(h)];
          }
        }
        if (owner?.server.tls?.httpsRedirect) vhost.require_tls = 'ALL';
        return vhost;
      });
    return { name, virtual_hosts: virtualHosts };
  };

  const accessLog = (): Obj[] => {
    if (!opts.accessLog.enabled) return [];
    const format = opts.accessLog.format === 'json'
      ? { log_format: { json_format: { start_time: '%START_TIME%', method: '%REQ(:METHOD)%', path: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%', protocol: '%PROTOCOL%', response_code: '%RESPONSE_CODE%', response_flags: '%RESPONSE_FLAGS%', bytes_received: '%BYTES_RECEIVED%', bytes_sent: '%BYTES_SENT%', duration: '%DURATION%', upstream_host: '%UPSTREAM_HOST%', authority: '%REQ(:AUTHORITY)%', downstream_peer_uri_san: '%DOWNSTREAM_PEER_URI_SAN%', connection_termination_details: '%CONNECTION_TERMINATION_DETAILS%' } } }
      : {};
    if (opts.accessLog.path === '-') {
      return [{ name: 'envoy.access_loggers.stdout', typed_config: { '@type': `${TYPE}envoy.extensions.access_loggers.stream.v3.StdoutAccessLog`, ...format } }];
    }
    return [{ name: 'envoy.access_loggers.file', typed_config: { '@type': `${TYPE}envoy.extensions.access_loggers.file.v3.FileAccessLog`, path: opts.accessLog.path, ...format } }];
  };

  const rbac = rbacFilters(config.authorizationPolicies);
  const hcm = (statPrefix: string, servers: ChainServer[], port: number, mutual: boolean): Obj => ({
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': `${TYPE}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
      stat_prefix: statPrefix,
      codec_type: 'AUTO',
      use_remote_address: true,
      strip_any_host_port: true,
      common_http_protocol_options: { idle_timeout: protoDuration(opts.timeouts.idle) },
      max_request_headers_kb: Math.min(8192, Math.ceil(opts.limits.maxHeaderSize / 1024)),
      ...(opts.timeouts.request > 0 ? { request_timeout: protoDuration(opts.timeouts.request) } : {}),
      forward_client_cert_details: mutual ? 'SANITIZE_SET' : 'SANITIZE',
      ...(mutual ? { set_current_client_cert_details: { subject: true, uri: true, dns: true } } : {}),
      route_config: routeConfig(statPrefix, servers, port),
      http_filters: [...rbac, { name: 'envoy.filters.http.router', typed_config: { '@type': `${TYPE}envoy.extensions.filters.http.router.v3.Router` } }],
      access_log: accessLog(),
    },
  });

  /** Destinations with weight 0 are left out, as Istio does (Envoy's tcp_proxy requires weights of at least 1). */
  const weighted = <T extends { weight?: number | undefined }>(routes: T[]): T[] => {
    const kept = routes.length > 1 ? routes.filter((r) => (r.weight ?? 0) > 0) : routes;
    return kept.length ? kept : routes.slice(0, 1);
  };
  const tcpProxy = (statPrefix: string, all: RouteDestination[]): Obj => {
    const routes = weighted(all);
    return {
    name: 'envoy.filters.network.tcp_proxy',
    typed_config: {
      '@type': `${TYPE}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`,
      stat_prefix: statPrefix,
      ...(routes.length === 1
        ? { cluster: cluster(routes[0]!.destination) }
        : { weighted_clusters: { clusters: routes.map((r) => ({ name: cluster(r.destination), weight: r.weight ?? 0 })) } }),
      ...(opts.timeouts.idle > 0 ? { idle_timeout: protoDuration(opts.timeouts.idle) } : {}),
      access_log: accessLog(),
    },
    };
  };

  const tlsParams = (s: GatewayServer): Obj => {
    const t = s.tls!;
    const po = opts.ports.find((p) => p.port === s.port.number);
    const curves = po?.ecdhCurves ?? opts.ecdhCurves;
    const sigalgs = po?.signatureAlgorithms ?? opts.signatureAlgorithms;
    const p: Obj = {};
    if (t.minProtocolVersion !== 'TLS_AUTO') p.tls_minimum_protocol_version = ENVOY_TLS_VERSION[t.minProtocolVersion];
    if (t.maxProtocolVersion !== 'TLS_AUTO') p.tls_maximum_protocol_version = ENVOY_TLS_VERSION[t.maxProtocolVersion];
    if (t.cipherSuites?.length) p.cipher_suites = t.cipherSuites;
    if (curves) p.ecdh_curves = curves;
    if (sigalgs) p.signature_algorithms = sigalgs;
    return p;
  };

  const downstreamTls = (s: GatewayServer, at: string): Obj => {
    const t = s.tls!;
    const po = opts.ports.find((p) => p.port === s.port.number);
    const common: Obj = {};
    const params = tlsParams(s);
    if (Object.keys(params).length) common.tls_params = params;
    if (s.port.protocol === 'HTTPS') common.alpn_protocols = ['h2', 'http/1.1'];
    const ctx: Obj = { '@type': `${TYPE}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext` };
    if (t.mode === 'ISTIO_MUTUAL') {
      workloadUsed = true;
      common.tls_certificate_sds_secret_configs = [sdsSecret('default', workloadCluster)];
      const sans = t.subjectAltNames?.map(sanMatcher) ?? [{ san_type: 'URI', matcher: { prefix: `spiffe://${opts.trustDomain}/` } }];
      common.combined_validation_context = { default_validation_context: { match_typed_subject_alt_names: sans }, validation_context_sds_secret_config: sdsSecret('ROOTCA', workloadCluster) };
      ctx.require_client_certificate = true;
    } else {
      const cred = t.credentialName!;
      common.tls_certificate_sds_secret_configs = [sdsSecret(`kubernetes://${cred}`)];
      if (t.mode === 'MUTUAL') {
        const dvc: Obj = {};
        if (t.subjectAltNames?.length) dvc.match_typed_subject_alt_names = t.subjectAltNames.map(sanMatcher);
        if (po?.onlyVerifyLeafCertCrl ?? opts.onlyVerifyLeafCertCrl) dvc.only_verify_leaf_cert_crl = true;
        common.combined_validation_context = { default_validation_context: dvc, validation_context_sds_secret_config: sdsSecret(`kubernetes://${cred}-cacert`) };
        ctx.require_client_certificate = true;
      }
      const policy = input.staplePolicies[cred];
      if (policy === undefined) warnings.push(`${at}: credential ${cred} has no stapling policy from the secrets folder; LENIENT_STAPLING`);
      ctx.ocsp_staple_policy = policy ?? 'LENIENT_STAPLING';
    }
    ctx.common_tls_context = common;
    return { name: 'envoy.transport_sockets.tls', typed_config: ctx };
  };

  // Listeners: one per (bind address, port).
  const groups = new Map<string, ChainServer[]>();
  for (const gw of config.gateways) {
    gw.spec.servers.forEach((server, index) => {
      const key = `${server.bind ?? '0.0.0.0'}|${server.port.number}`;
      const list = groups.get(key) ?? [];
      list.push({ gateway: gw, index, server });
      groups.set(key, list);
    });
  }
  const boundVs = (gateways: Set<string>) => config.virtualServices.filter((vs) => vs.spec.gateways.some((g) => gateways.has(g)));
  const listeners: Obj[] = [];
  for (const [key, servers] of groups) {
    const [bind, portText] = key.split('|') as [string, string];
    const port = Number(portText);
    const proto = servers[0]!.server.port.protocol;
    const isTls = proto === 'HTTPS' || proto === 'TLS';
    const gateways = new Set(servers.map((s) => s.gateway.name));
    const chains: Obj[] = [];
    if (proto === 'TCP') {
      const route = boundVs(gateways).flatMap((vs) => vs.spec.tcp).find((r) => !r.match?.length || r.match.some((m) => m.port === undefined || m.port === port));
      if (route) chains.push({ filters: [tcpProxy(`tcp_${port}`, route.route)] });
      else warnings.push(`port ${port}: TCP server without a tcp route; Envoy closes its connections`);
    } else if (!isTls) {
      chains.push({ filters: [hcm(`http_${port}`, servers, port, false)] });
    } else {
      // Envoy refuses two filter chains with the same match: a name (or "*", the chain without SNI) goes to the
      // first chain that claims it. Terminating servers first (the loader made their hosts unique), then
      // PASSTHROUGH routes by sniHosts, then PASSTHROUGH servers' tcp routes for the rest of their hosts.
      const taken = new Set<string>();
      const claim = (names: string[], what: string): Obj | undefined | null => {
        const fresh = [...new Set(names)].filter((n) => !taken.has(n));
        if (fresh.length < names.length) warnings.push(`${what}: ${names.filter((n) => taken.has(n)).join(', ')} on port ${port} already has a filter chain; the first one wins`);
        if (fresh.length === 0) return null;
        fresh.forEach((n) => taken.add(n));
        if (fresh.includes('*')) {
          const rest = fresh.filter((n) => n !== '*');
          if (rest.length) warnings.push(`${what}: "*" covers ${rest.join(', ')}; one chain without SNI match`);
          return undefined;
        }
        return { server_names: fresh };
      };
      const ordered = [...servers.filter((s) => s.server.tls!.mode !== 'PASSTHROUGH'), ...servers.filter((s) => s.server.tls!.mode === 'PASSTHROUGH')];
      for (const s of ordered) {
        const t = s.server.tls!;
        const at = `Gateway ${s.gateway.name} spec.servers[${s.index}]`;
        const stat = `${s.server.port.protocol.toLowerCase()}_${port}_${s.gateway.name}_${s.index}`;
        const own = boundVs(new Set([s.gateway.name]));
        const tcpRoute = own.flatMap((vs) => vs.spec.tcp).find((r) => !r.match?.length || r.match.some((m) => m.port === undefined || m.port === port));
        if (t.mode === 'PASSTHROUGH') {
          for (const vs of own) {
            for (const r of vs.spec.tls) {
              for (const m of r.match) {
                if (m.port !== undefined && m.port !== port) continue;
                if (m.gateways && !m.gateways.includes(s.gateway.name)) continue;
                const names = m.sniHosts.filter((h) => s.server.hosts.some((sh) => hostMatches(sh, h)));
                if (names.length === 0) continue;
                const match = claim(names, `VirtualService ${vs.name} tls sniHosts`);
                if (match === null) continue;
                chains.push({ ...(match ? { filter_chain_match: match } : {}), filters: [tcpProxy(`${stat}_${vs.name}`, r.route)] });
              }
            }
          }
          if (tcpRoute) {
            const match = claim(s.server.hosts, `${at} hosts`);
            if (match !== null) chains.push({ ...(match ? { filter_chain_match: match } : {}), filters: [tcpProxy(`${stat}_tcp`, tcpRoute.route)] });
          }
          continue;
        }
        const match = claim(s.server.hosts, `${at} hosts`);
        if (match === null) continue;
        const chain: Obj = {};
        if (match) chain.filter_chain_match = match;
        chain.transport_socket = downstreamTls(s.server, at);
        chain.transport_socket_connect_timeout = protoDuration(opts.timeouts.handshake);
        const mutual = t.mode === 'MUTUAL' || t.mode === 'ISTIO_MUTUAL';
        if (s.server.port.protocol === 'HTTPS') chain.filters = [hcm(stat, [s], port, mutual)];
        else {
          if (!tcpRoute) {
            warnings.push(`${at}: TLS server without a tcp route; no filter chain (Envoy closes its connections)`);
            continue;
          }
          chain.filters = [tcpProxy(stat, tcpRoute.route)];
        }
        chains.push(chain);
      }
    }
    if (chains.length === 0) {
      warnings.push(`port ${port}: nothing to serve; no listener`);
      continue;
    }
    const listener: Obj = {
      name: `${bind}_${port}`,
      address: { socket_address: { address: bind, port_value: port } },
      filter_chains: chains,
    };
    if (isTls) {
      listener.listener_filters = [
        { name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': `${TYPE}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector` } },
      ];
      listener.listener_filters_timeout = protoDuration(opts.timeouts.handshake);
    }
    listeners.push(listener);
  }

  if (config.authorizationPolicies.length > 0 && listeners.some((l) => (l.filter_chains as Obj[]).some((c) => (c.filters as Obj[])[0]!.name === 'envoy.filters.network.tcp_proxy'))) {
    warnings.push('AuthorizationPolicies are rendered as HTTP RBAC filters only: TCP and PASSTHROUGH routes are not authorized by them');
  }
  if (opts.validation.length > 0) {
    warnings.push('GatewayOptions validation (asynchronous OCSP / HTTP validators) has no Envoy equivalent here and is not rendered');
  }

  clusters.set(SDS_CLUSTER_NAME, sdsCluster(SDS_CLUSTER_NAME, input.sds, opts.timeouts.upstreamConnect));
  if (input.workloadSds && workloadUsed) {
    clusters.set(WORKLOAD_SDS_CLUSTER_NAME, sdsCluster(WORKLOAD_SDS_CLUSTER_NAME, input.workloadSds, opts.timeouts.upstreamConnect));
  } else if (workloadUsed) {
    warnings.push('ISTIO_MUTUAL: the workload identity (default) and trust bundle (ROOTCA) are fetched from the same SDS as the gateway secrets; give the agent\'s socket as the workload SDS if that SDS does not serve them');
  }
  const bootstrap: Obj = {
    node: { id: input.nodeId ?? 'meshcert-gateway', cluster: input.nodeCluster ?? 'meshcert-gateway' },
    static_resources: { listeners, clusters: [...clusters.values()] },
    layered_runtime: {
      layers: [{ name: 'static', static_layer: { 'overload.global_downstream_max_connections': opts.limits.maxConnections } }],
    },
  };
  if (opts.admin) {
    bootstrap.admin = { address: { socket_address: { address: opts.admin.listen.host, port_value: opts.admin.listen.port } } };
  }
  return { bootstrap, warnings };
}

/** The SDS cluster: HTTP/2 (gRPC) over the Unix socket, or over TCP with TLS verifying meshcert's certificate. */
function sdsCluster(name: string, sds: SdsEndpoint, connectTimeoutMs: number): Obj {
  const address = sds.kind === 'uds' ? { pipe: { path: sds.path } } : { socket_address: { address: sds.host, port_value: sds.port } };
  const c: Obj = {
    name,
    type: sds.kind === 'uds' || isIP(sds.host) ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: protoDuration(connectTimeoutMs),
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': `${TYPE}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`,
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address } }] }] },
  };
  if (sds.kind === 'tcp') {
    const common: Obj = {
      alpn_protocols: ['h2'],
      validation_context: {
        trusted_ca: { filename: sds.caFile },
        ...(sds.serverName ? { match_typed_subject_alt_names: [sanMatcher(sds.serverName)] } : {}),
      },
    };
    if (sds.certFile && sds.keyFile) common.tls_certificates = [{ certificate_chain: { filename: sds.certFile }, private_key: { filename: sds.keyFile } }];
    c.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': `${TYPE}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
        ...(sds.serverName ? { sni: sds.serverName } : {}),
        common_tls_context: common,
      },
    };
  }
  return c;
}
