// buildEnvoyBootstrap on its own (no CLI, no secrets folder): the shapes Envoy needs for the harder cases, each
// decoded as envoy.config.bootstrap.v3.Bootstrap from Envoy's protos.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildEnvoyBootstrap, parseGatewayFile, protoDuration } from '../../src/config/index.js';
import { decodeEnvoyJson } from './envoy-proto.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const UDS = { kind: 'uds', path: '/run/sds.sock' } as const;
const build = (yaml: string, staplePolicies = {}) => {
  const r = buildEnvoyBootstrap({ config: parseGatewayFile(yaml, 't.yaml'), staplePolicies, sds: UDS });
  decodeEnvoyJson(r.bootstrap);
  return { b: r.bootstrap as Obj, warnings: r.warnings };
};
const GW = (servers: string) => `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:
${servers}
`;
const OPTS = (upstreams: string, extra = '') => `---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams: ${upstreams}
${extra}`;

test('protoDuration writes proto3 JSON durations', () => {
  assert.equal(protoDuration(5000), '5s');
  assert.equal(protoDuration(1500), '1.5s');
  assert.equal(protoDuration(1), '0.001s');
  assert.equal(protoDuration(0), '0s');
});

test('one port, PASSTHROUGH by SNI beside a terminating server: each name in one filter chain only; "*" is the chain without SNI', () => {
  const { b, warnings } = build(
    `${GW(`  - port: { number: 443, name: a, protocol: HTTPS }
    hosts: [app.test]
    tls: { mode: SIMPLE, credentialName: app }
  - port: { number: 443, name: p, protocol: TLS }
    hosts: ["*"]
    tls: { mode: PASSTHROUGH }`)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: pt }
spec:
  hosts: ["*"]
  gateways: [edge]
  tls:
  - match: [{ sniHosts: [app.test, db.test] }]
    route: [{ destination: { host: db, port: { number: 5432 } } }]
  tcp:
  - route: [{ destination: { host: other, port: { number: 9000 } } }]
${OPTS('{ db: 10.0.0.1, other: 10.0.0.2 }')}`,
    { app: 'MUST_STAPLE' },
  );
  const chains = b.static_resources.listeners[0].filter_chains as Obj[];
  assert.deepEqual(
    chains.map((c) => [c.filter_chain_match?.server_names ?? null, c.transport_socket ? 'tls' : c.filters[0].typed_config.cluster]),
    [
      [['app.test'], 'tls'],
      [['db.test'], 'outbound|5432||db'],
      [null, 'outbound|9000||other'],
    ],
  );
  assert.equal(chains[0]!.transport_socket.typed_config.ocsp_staple_policy, 'MUST_STAPLE');
  assert.ok(warnings.some((w) => /app\.test on port 443 already has a filter chain/.test(w)), warnings.join('\n'));
});

test('plain HTTP: VirtualService hosts within server hosts become unique domains; httpsRedirect is require_tls', () => {
  const { b } = build(
    `${GW(`  - port: { number: 80, name: h, protocol: HTTP }
    hosts: ["*.example.test"]
    tls: { httpsRedirect: true }
  - port: { number: 80, name: h2, protocol: HTTP }
    hosts: [plain.test]
  - port: { number: 80, name: h3, protocol: HTTP }
    hosts: ["*"]
    tls: { httpsRedirect: true }`)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a }
spec:
  hosts: ["*"]
  gateways: [edge]
  http: [{ route: [{ destination: { host: be, port: { number: 8080 } } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: b }
spec:
  hosts: [plain.test]
  gateways: [edge]
  http: [{ match: [{ uri: { prefix: /b } }], route: [{ destination: { host: be, port: { number: 8081 } } }] }]
${OPTS('{ be: 127.0.0.1 }')}`,
  );
  const vhosts = b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts as Obj[];
  assert.deepEqual(vhosts.map((v) => [v.domains[0], v.routes.length, v.require_tls ?? null]), [
    ['plain.test', 2, null],
    ['*.example.test', 1, 'ALL'],
    ['*', 1, 'ALL'],
  ]);
  assert.equal(b.static_resources.listeners[0].listener_filters, undefined, 'no tls_inspector on a plain port');
});

test('AuthorizationPolicy as RBAC: principals, namespaces, paths, methods, hosts, when conditions; DENY before ALLOW', () => {
  const { b } = build(
    `${GW(`  - port: { number: 443, name: m, protocol: HTTPS }
    hosts: [pay.test]
    tls: { mode: MUTUAL, credentialName: pay }`)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a }
spec:
  hosts: [pay.test]
  gateways: [edge]
  http: [{ route: [{ destination: { host: be, port: { number: 8080 } } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-cart, namespace: shop }
spec:
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/cart, "*/sa/admin"], namespaces: [shop] } }]
    to: [{ operation: { paths: ["/pay*"], methods: [POST], hosts: [pay.test], notPorts: ["8443"] } }]
    when: [{ key: connection.sni, values: [pay.test] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-all-admin }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: [/admin] } }] }]
${OPTS('{ be: 127.0.0.1 }')}`,
  );
  const filters = b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters as Obj[];
  const [deny, allow] = filters.map((f) => f.typed_config.rules);
  assert.equal(deny.action, 'DENY');
  assert.deepEqual(deny.policies['ns[default]-policy[deny-all-admin]-rule[0]'], { permissions: [{ url_path: { path: { exact: '/admin' } } }], principals: [{ any: true }] });
  const p = allow.policies['ns[shop]-policy[allow-cart]-rule[0]'];
  assert.deepEqual(p.principals[0].and_ids.ids[0].or_ids.ids, [
    { authenticated: { principal_name: { exact: 'spiffe://cluster.local/ns/shop/sa/cart' } } },
    { authenticated: { principal_name: { suffix: '/sa/admin' } } },
  ]);
  assert.deepEqual(p.principals[0].and_ids.ids[1], { authenticated: { principal_name: { safe_regex: { regex: 'spiffe://[^/]+/ns/shop/.*' } } } });
  const rules = p.permissions[0].and_rules.rules;
  assert.deepEqual(rules[0].and_rules.rules, [
    { header: { name: ':authority', string_match: { exact: 'pay.test', ignore_case: true } } },
    { not_rule: { destination_port: 8443 } },
    { header: { name: ':method', string_match: { exact: 'POST' } } },
    { url_path: { path: { prefix: '/pay' } } },
  ]);
  assert.deepEqual(rules[1], { requested_server_name: { exact: 'pay.test' } });
});

test('an ALLOW policy without rules allows nothing (an RBAC ALLOW filter with no policies)', () => {
  const { b } = build(
    `${GW(`  - port: { number: 80, name: h, protocol: HTTP }
    hosts: ["*"]`)}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-nothing }
spec: {}
`,
  );
  const rbac = b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules;
  assert.deepEqual(rbac, { action: 'ALLOW', policies: {} });
});

test('TLS-terminated TCP, DestinationRule file paths and system CAs, limits, admin and warnings for what Envoy cannot do', () => {
  const { b, warnings } = build(
    `${GW(`  - port: { number: 5433, name: t, protocol: TLS }
    hosts: [db.test]
    tls: { mode: SIMPLE, credentialName: db, maxProtocolVersion: TLSV1_2 }
  - port: { number: 6000, name: m, protocol: HTTPS }
    hosts: [m.test]
    tls: { mode: MUTUAL, credentialName: m }`)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a }
spec:
  hosts: [db.test]
  gateways: [edge]
  tcp: [{ route: [{ destination: { host: db, port: { number: 5432 } }, weight: 1 }, { destination: { host: web, port: { number: 443 } }, weight: 1 }] }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: db }
spec:
  host: db
  trafficPolicy: { tls: { mode: MUTUAL, clientCertificate: /etc/c.pem, privateKey: /etc/k.pem, caCertificates: /etc/ca.pem } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web }
spec:
  host: web
  trafficPolicy: { tls: { mode: SIMPLE } }
${OPTS('{ db: 10.0.0.1, web: web.example.com }', `  limits: { maxConnections: 42 }
  validation: [{ ocsp: {} }]
  accessLog: { path: /var/log/envoy.log, format: text }`)}`,
  );
  const [tls, mutual] = b.static_resources.listeners as Obj[];
  const chain = tls.filter_chains[0];
  assert.equal(chain.filters[0].name, 'envoy.filters.network.tcp_proxy');
  assert.deepEqual(chain.filters[0].typed_config.weighted_clusters.clusters.map((c: Obj) => c.name), ['outbound|5432||db', 'outbound|443||web']);
  assert.equal(chain.filters[0].typed_config.access_log[0].typed_config.path, '/var/log/envoy.log');
  assert.equal(chain.transport_socket.typed_config.common_tls_context.tls_params.tls_maximum_protocol_version, 'TLSv1_2');
  assert.equal(chain.transport_socket.typed_config.common_tls_context.alpn_protocols, undefined, 'no ALPN for raw TLS');
  assert.ok(mutual.filter_chains[0].transport_socket.typed_config.require_client_certificate);
  const clusters = b.static_resources.clusters as Obj[];
  const db = clusters.find((c) => c.name === 'outbound|5432||db')!.transport_socket.typed_config.common_tls_context;
  assert.equal(db.tls_certificates[0].certificate_chain.filename, '/etc/c.pem');
  assert.equal(db.validation_context.trusted_ca.filename, '/etc/ca.pem');
  assert.deepEqual(db.validation_context.match_typed_subject_alt_names, [{ san_type: 'DNS', matcher: { exact: 'db' } }]);
  const web = clusters.find((c) => c.name === 'outbound|443||web')!;
  assert.equal(web.type, 'STRICT_DNS');
  assert.equal(web.transport_socket.typed_config.common_tls_context.validation_context.trusted_ca.filename, '/etc/ssl/certs/ca-certificates.crt');
  assert.equal(b.layered_runtime.layers[0].static_layer['overload.global_downstream_max_connections'], 42);
  assert.ok(warnings.some((w) => /validation .* has no Envoy equivalent/.test(w)), warnings.join('\n'));
  assert.ok(!warnings.some((w) => /ISTIO_MUTUAL/.test(w)), 'no ISTIO_MUTUAL here');
  assert.deepEqual(clusters.map((c) => c.name).filter((n) => n.startsWith('meshcert')), ['meshcert-sds']);
  assert.ok(warnings.some((w) => /credential db has no stapling policy|credential m has no stapling policy/.test(w)));
});

test('ISTIO_MUTUAL without a workload SDS: default and ROOTCA from the one SDS cluster, with a warning', () => {
  const { b, warnings } = build(
    `${GW(`  - port: { number: 15443, name: mesh, protocol: HTTPS }
    hosts: ["*"]
    tls: { mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://td/ns/a/sa/b] }`)}`,
  );
  const ctx = b.static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context;
  assert.equal(ctx.tls_certificate_sds_secret_configs[0].sds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name, 'meshcert-sds');
  assert.deepEqual(ctx.combined_validation_context.default_validation_context.match_typed_subject_alt_names, [{ san_type: 'URI', matcher: { exact: 'spiffe://td/ns/a/sa/b' } }]);
  assert.ok(warnings.some((w) => /ISTIO_MUTUAL: the workload identity/.test(w)), warnings.join('\n'));
});

test('the decoder enforces the protoc-gen-validate rules Envoy checks on load', () => {
  const tcp = (weights: number[]) => ({
    static_resources: {
      listeners: [{
        name: 'l',
        address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
        filter_chains: [{ filters: [{ name: 'tcp', typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
          stat_prefix: 's',
          weighted_clusters: { clusters: weights.map((weight, i) => ({ name: `c${i}`, weight })) },
        } }] }],
      }],
    },
  });
  decodeEnvoyJson(tcp([1, 2]));
  assert.throws(() => decodeEnvoyJson(tcp([1, 0])), /clusters\[1\]\.weight: must be at least 1/);
  assert.throws(() => decodeEnvoyJson({ static_resources: { clusters: [{ name: '' }] } }), /clusters\[0\]\.name: at least 1 character/);
  assert.throws(() => decodeEnvoyJson({ static_resources: { listeners: [{ name: 'l', filter_chains: [{ filters: [{ name: 'x', typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules: { policies: { p: { permissions: [], principals: [{ any: true }] } } } } }] }] }] } }), /permissions: at least 1 item/);
  assert.throws(() => decodeEnvoyJson({ static_resources: { listeners: [{ name: 'l', filter_chains: [{ filters: [{ name: 'x', typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', stat_prefix: 's', max_request_headers_kb: 9000, route_config: {} } }] }] }] } }), /max_request_headers_kb: must be at most 8192/);
});

test('zero weights: tcp_proxy leaves out destinations with weight 0 (Envoy requires at least 1)', () => {
  const { b } = build(
    `${GW(`  - port: { number: 9000, name: t, protocol: TCP }
    hosts: ["*"]`)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a }
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp: [{ route: [{ destination: { host: a, port: { number: 1 } }, weight: 100 }, { destination: { host: b, port: { number: 2 } }, weight: 0 }] }]
${OPTS('{ a: 10.0.0.1, b: 10.0.0.2 }')}`,
  );
  assert.equal(b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster, 'outbound|1||a');
});

test('header changes: route-level and a single destination\'s both go on the route; several destinations carry their own', () => {
  const { b } = build(
    `${GW(`  - port: { number: 80, name: h, protocol: HTTP }
    hosts: ["*"]`)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a }
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - match: [{ uri: { prefix: /one } }]
    headers: { request: { set: { x-route: "1" } } }
    route: [{ destination: { host: a, port: { number: 1 } }, headers: { request: { add: { x-dest: "1" } }, response: { remove: [server] } } }]
  - headers: { response: { set: { x-route: "2" } } }
    route:
    - { destination: { host: a, port: { number: 1 } }, weight: 1, headers: { request: { set: { x-which: a } } } }
    - { destination: { host: b, port: { number: 2 } }, weight: 1, headers: { request: { set: { x-which: b } } } }
${OPTS('{ a: 10.0.0.1, b: 10.0.0.2 }')}`,
  );
  const [one, two] = b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes as Obj[];
  assert.deepEqual(one!.request_headers_to_add, [
    { header: { key: 'x-route', value: '1' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    { header: { key: 'x-dest', value: '1' }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
  ]);
  assert.deepEqual(one!.response_headers_to_remove, ['server']);
  assert.deepEqual(two!.response_headers_to_add, [{ header: { key: 'x-route', value: '2' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }]);
  assert.deepEqual(two!.route.weighted_clusters.clusters.map((c: Obj) => c.request_headers_to_add[0].header.value), ['a', 'b']);
});
