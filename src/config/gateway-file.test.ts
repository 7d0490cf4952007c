import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMeshError } from '../core/index.js';
import { loadGatewayFile, parseGatewayFile } from './index.js';

/** The example of issue #8, plus what the other kinds add. */
const FULL = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [prod/App.Example.Test, "*.example.test"]
    tls: { mode: SIMPLE, credentialName: app-cred, minProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256] }
  - port: { number: 8443, name: mtls, protocol: HTTPS }
    hosts: [pay.example.test]
    tls: { mode: MUTUAL, credentialName: kubernetes://pay-cred, subjectAltNames: [spiffe://cluster.local/ns/shop/sa/cart] }
  - port: { number: 8080, name: http, protocol: HTTP }
    hosts: ["*"]
    tls: { httpsRedirect: true }
  - port: { number: 9443, name: tls, protocol: TLS }
    hosts: [db.example.test]
    tls: { mode: PASSTHROUGH }
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: [app.example.test, pay.example.test]
  gateways: [istio-system/edge]
  http:
  - match: [{ uri: { prefix: /api }, method: { exact: GET }, headers: { X-Env: { exact: prod } } }]
    rewrite: { uri: /v2 }
    timeout: 5s
    retries: { attempts: 2, perTryTimeout: 1s }
    headers: { request: { set: { x-a: b }, remove: [x-c] }, response: { add: { x-d: e } } }
    route:
    - { destination: { host: app-backend, port: { number: 8080 } }, weight: 90 }
    - { destination: { host: app-backend, port: { number: 8080 }, subset: canary }, weight: 10 }
  - route: [{ destination: { host: app-backend } }]
  tls:
  - match: [{ sniHosts: [db.example.test], port: 9443 }]
    route: [{ destination: { host: db, port: { number: 5432 } } }]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: { name: app-backend }
spec:
  host: app-backend
  trafficPolicy:
    tls: { mode: SIMPLE, sni: backend.internal, subjectAltNames: [backend.internal] }
    connectionPool: { tcp: { maxConnections: 100, connectTimeout: 2s }, http: { idleTimeout: 30s } }
    portLevelSettings:
    - port: { number: 8443 }
      tls: { mode: MUTUAL, credentialName: backend-client }
  subsets:
  - name: canary
    labels: { version: v2 }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: pay-only }
spec:
  selector: { matchLabels: { app: gw } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/cart"] } }]
    to: [{ operation: { paths: ["/pay*"], methods: [GET, POST] } }]
    when: [{ key: "request.headers[x-tenant]", values: [acme] }]
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams: { app-backend: 127.0.0.1:8081, db: { address: "::1" } }
  ecdhCurves: [X25519, P-256]
  ports: [{ port: 8443, signatureAlgorithms: [ecdsa_secp256r1_sha256] }]
  timeouts: { handshake: 5s }
  validation:
  - port: 8443
    ocsp: { timeout: 2s, onUnknown: allow }
    http: { url: http://127.0.0.1:9000/validate, timeout: 1s, failOpen: false }
  admin: { listen: 127.0.0.1:15000 }
---
# an empty trailing document
`;

function problems(text: string): string[] {
  try {
    parseGatewayFile(text, 'gw.yaml');
  } catch (err) {
    assert.ok(isMeshError(err, 'MESH_ERR_CONFIG'), `expected MESH_ERR_CONFIG, got ${String(err)}`);
    assert.match(err.message, /^gw\.yaml: /);
    return err.details!.problems as string[];
  }
  assert.fail('expected the file to be refused');
}

const GW = (servers: string) => `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:
${servers}`;
const SIMPLE_SERVER = `  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [app.example.test]
    tls: { mode: SIMPLE, credentialName: app-cred }`;

test('the full example loads: every kind, its defaults and normalized values', () => {
  const c = parseGatewayFile(FULL, 'gw.yaml');
  assert.equal(c.source, 'gw.yaml');
  assert.equal(c.gateways.length, 1);
  const gw = c.gateways[0]!;
  assert.equal(gw.namespace, 'istio-system');
  assert.deepEqual(gw.spec.servers[0]!.hosts, ['app.example.test', '*.example.test']);
  assert.equal(gw.spec.servers[1]!.tls!.credentialName, 'pay-cred');
  assert.equal(gw.spec.servers[0]!.tls!.maxProtocolVersion, 'TLS_AUTO');
  assert.equal(gw.spec.servers[2]!.tls!.mode, 'PASSTHROUGH');
  assert.equal(gw.spec.servers[2]!.tls!.httpsRedirect, true);
  const vs = c.virtualServices[0]!;
  assert.deepEqual(vs.spec.gateways, ['edge']);
  assert.equal(vs.spec.http[0]!.timeout, 5000);
  assert.deepEqual(vs.spec.http[0]!.match![0]!.headers!['x-env'], { kind: 'exact', value: 'prod' });
  assert.equal(c.destinationRules[0]!.spec.trafficPolicy!.connectionPool!.tcp!.connectTimeout, 2000);
  assert.equal(c.authorizationPolicies[0]!.spec.action, 'ALLOW');
  assert.deepEqual(c.options.upstreams['app-backend'], { host: '127.0.0.1', port: 8081 });
  assert.deepEqual(c.options.upstreams.db, { host: '::1' });
  assert.equal(c.options.timeouts.handshake, 5000);
  assert.equal(c.options.timeouts.upstreamConnect, 5000);
  assert.equal(c.options.limits.maxHeaderSize, 61_440);
  assert.equal(c.options.trustDomain, 'cluster.local');
  assert.equal(c.options.validation[0]!.ocsp!.onUnknown, 'allow');
  assert.equal(c.options.validation[0]!.ocsp!.onError, 'deny');
  assert.deepEqual(c.options.admin!.listen, { host: '127.0.0.1', port: 15000 });
  assert.deepEqual(c.warnings, []);
});

test('a file without GatewayOptions gets the defaults; loadGatewayFile reads from disk and names the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gwfile-'));
  try {
    const file = join(dir, 'gw.yaml');
    writeFileSync(file, GW(`  - port: { number: 8080, name: http, protocol: HTTP }\n    hosts: ["*"]\n`));
    const c = loadGatewayFile(file);
    assert.equal(c.source, file);
    assert.deepEqual(c.options.upstreams, {});
    assert.equal(c.options.accessLog.enabled, true);
    assert.throws(() => loadGatewayFile(join(dir, 'missing.yaml')), (e: unknown) => isMeshError(e, 'MESH_ERR_FILE_READ') && e.message.includes('missing.yaml'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unknown field is an error naming the document, kind, name and field path', () => {
  const p = problems(GW(`  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [app.example.test]
    tls: { mode: SIMPLE, credentialName: app-cred, minTlsVersion: TLSV1_2 }`));
  assert.deepEqual(p, ['document 1 (Gateway edge): spec.servers[0].tls.minTlsVersion: unknown field']);
  const q = problems(`${GW(SIMPLE_SERVER)}\n---\napiVersion: meshcert.dev/v1\nkind: GatewayOptions\nspec: { upstream: {} }\n`);
  assert.deepEqual(q, ['document 2 (GatewayOptions): spec.upstream: unknown field']);
});

test('kinds, apiVersions and YAML are checked; every problem of the file is listed at once', () => {
  const p = problems(`apiVersion: networking.istio.io/v2
kind: Gateway
metadata: { name: a }
spec: {}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: b }
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
spec: {}
---
- just a list
`);
  assert.equal(p.length, 4);
  assert.match(p[0]!, /^document 1 \(Gateway a\): apiVersion: "networking.istio.io\/v2" is not an apiVersion of Gateway/);
  assert.match(p[1]!, /^document 2 \(ServiceEntry b\): kind: "ServiceEntry" is not a kind/);
  assert.match(p[2]!, /^document 3 \(AuthorizationPolicy\): metadata.name: required/);
  assert.match(p[3]!, /^document 4: expected a resource/);
  assert.throws(() => parseGatewayFile('a: [1, 2', 'bad.yaml'), (e: unknown) => isMeshError(e, 'MESH_ERR_CONFIG') && /bad\.yaml: not valid YAML/.test(e.message));
  assert.deepEqual(problems('# nothing\n'), ['gw.yaml: no Gateway document: the gateway needs at least one Gateway with servers']);
});

test('Gateway servers: modes, protocols, versions, cipher suites and credentials', () => {
  const server = (tls: string, protocol = 'HTTPS') =>
    GW(`  - port: { number: 8443, name: s, protocol: ${protocol} }\n    hosts: [a.test]\n    tls: ${tls}\n`);
  assert.match(problems(server('{ mode: AUTO_PASSTHROUGH }'))[0]!, /spec\.servers\[0\]\.tls\.mode: AUTO_PASSTHROUGH is not supported/);
  assert.match(problems(server('{ mode: FANCY }'))[0]!, /tls\.mode: "FANCY" is not a TLS mode/);
  assert.match(problems(server('{ mode: SIMPLE }'))[0]!, /tls\.credentialName: tls\.mode SIMPLE needs credentialName/);
  assert.match(problems(server('{ mode: MUTUAL }'))[0]!, /MUTUAL needs credentialName/);
  assert.match(problems(server('{ mode: ISTIO_MUTUAL, credentialName: x }'))[0]!, /ISTIO_MUTUAL uses the gateway's own workload identity/);
  assert.match(problems(server('{ mode: SIMPLE, credentialName: x, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2 }'))[0]!, /TLSV1_3 is above maxProtocolVersion TLSV1_2/);
  assert.match(problems(server('{ mode: SIMPLE, credentialName: x, maxProtocolVersion: TLSV1_4 }'))[0]!, /maxProtocolVersion: expected TLS_AUTO/);
  assert.match(problems(server('{ mode: SIMPLE, credentialName: x, cipherSuites: [TLS_AES_128_GCM_SHA256] }'))[0]!, /cipherSuites\[0\]: unknown cipher suite/);
  assert.match(problems(server('{ mode: SIMPLE, credentialName: x, subjectAltNames: [a] }'))[0]!, /subjectAltNames checks client certificates/);
  assert.match(problems(server('{ mode: SIMPLE, credentialName: x, serverCertificate: /etc/c.pem }'))[0]!, /serverCertificate: not supported by meshcert/);
  assert.match(problems(server('{ mode: SIMPLE, credentialName: x }', 'HTTP'))[0]!, /protocol HTTP is plaintext/);
  assert.match(problems(GW('  - port: { number: 8443, name: s, protocol: HTTPS }\n    hosts: [a.test]\n'))[0]!, /spec\.servers\[0\]\.tls: protocol HTTPS needs tls settings/);
  assert.match(problems(GW('  - port: { number: 8443, name: s, protocol: QUIC }\n    hosts: [a.test]\n'))[0]!, /port\.protocol: expected HTTP, HTTPS/);
  assert.match(problems(GW('  - port: { number: 8443, name: s, protocol: HTTP }\n    hosts: ["a.*.test"]\n'))[0]!, /hosts\[0\]: "a\.\*\.test" is not a host/);

  const warned = parseGatewayFile(server('{ mode: SIMPLE, credentialName: x, minProtocolVersion: TLSV1_3, cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256] }'), 'gw.yaml');
  assert.equal(warned.warnings.length, 1);
  assert.match(warned.warnings[0]!, /document 1 \(Gateway edge\) spec\.servers\[0\]: tls\.cipherSuites apply to TLS 1\.2 and older only; with minProtocolVersion TLSV1_3 they do not apply/);
  const lower = parseGatewayFile(server('{ mode: simple, credentialName: x, minProtocolVersion: tlsv1_2 }', 'https'), 'gw.yaml');
  assert.equal(lower.gateways[0]!.spec.servers[0]!.tls!.mode, 'SIMPLE');
  assert.equal(lower.gateways[0]!.spec.servers[0]!.port.protocol, 'HTTPS');
});

test('cross-document checks: ports, duplicates, unknown gateways, upstream addresses, subsets, validators', () => {
  // One port, one host, two TLS modes.
  const twoModes = problems(
    GW(`${SIMPLE_SERVER}
  - port: { number: 8443, name: https2, protocol: HTTPS }
    hosts: [app.example.test]
    tls: { mode: MUTUAL, credentialName: other }`),
  );
  assert.match(twoModes[0]!, /spec\.servers\[1\]: port 8443 host app\.example\.test: conflicting TLS mode MUTUAL here and SIMPLE in document 1 \(Gateway edge\) spec\.servers\[0\]/);
  // Plain HTTP and TLS on one port.
  assert.match(
    problems(GW(`${SIMPLE_SERVER}\n  - port: { number: 8443, name: h, protocol: HTTP }\n    hosts: [b.test]`))[0]!,
    /port 8443 is HTTP here but HTTPS in/,
  );
  // Same name twice.
  assert.match(problems(`${GW(SIMPLE_SERVER)}\n---\n${GW(SIMPLE_SERVER.replace('8443', '9443'))}`)[0]!, /document 2 \(Gateway edge\): same name as document 1/);

  const vs = (dest: string, gateways = '[edge]') => `${GW(SIMPLE_SERVER)}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: [app.example.test]
  gateways: ${gateways}
  http:
  - route: [{ destination: ${dest} }]
`;
  assert.match(problems(vs('{ host: app-backend, port: { number: 8080 } }'))[0]!, /document 2 \(VirtualService app\) spec\.http\[0\]\.route\[0\]\.destination: destination host app-backend has no address: add it to GatewayOptions spec\.upstreams/);
  const opts = (upstreams: string) => `\n---\napiVersion: meshcert.dev/v1\nkind: GatewayOptions\nspec: { upstreams: ${upstreams} }\n`;
  assert.match(problems(vs('{ host: app-backend }') + opts('{ app-backend: 127.0.0.1 }'))[0]!, /has no port: give destination\.port\.number/);
  assert.match(problems(vs('{ host: app-backend, subset: v2 }') + opts('{ app-backend: "127.0.0.1:80" }'))[0]!, /subset "v2" is not defined by a DestinationRule for host app-backend/);
  assert.match(problems(vs('{ host: app-backend }') + opts('{ app-backend: "127.0.0.1:99999" }'))[0]!, /spec\.upstreams\.app-backend: "127\.0\.0\.1:99999" is not an upstream address/);
  const ok = parseGatewayFile(vs('{ host: app-backend }', '[edge, other-ns/nowhere]') + opts('{ app-backend: "127.0.0.1:80" }'), 'gw.yaml');
  assert.deepEqual(ok.warnings, ['document 2 (VirtualService app) spec.gateways: gateway "nowhere" is not in this file']);
  const mesh = parseGatewayFile(vs('{ host: app-backend }', '[mesh]') + opts('{ app-backend: "127.0.0.1:80" }'), 'gw.yaml');
  assert.match(mesh.warnings[0]!, /binds to no gateway/);

  // Validators need a MUTUAL server on their port.
  const val = problems(`${GW(SIMPLE_SERVER)}\n---\napiVersion: meshcert.dev/v1\nkind: GatewayOptions\nspec:\n  validation: [{ port: 8443, ocsp: {} }, { port: 8443, http: { url: "ftp://x" } }]\n`);
  assert.ok(val.some((l) => /spec\.validation\[1\]\.http\.url: expected an http/.test(l)), val.join('\n'));
  const val2 = problems(`${GW(SIMPLE_SERVER)}\n---\napiVersion: meshcert.dev/v1\nkind: GatewayOptions\nspec:\n  validation: [{ port: 8443, ocsp: {} }, {}]\n`);
  assert.ok(val2.some((l) => /spec\.validation\[1\]: give ocsp or http/.test(l)), val2.join('\n'));
  const val3 = problems(`${GW(SIMPLE_SERVER)}\n---\napiVersion: meshcert.dev/v1\nkind: GatewayOptions\nspec:\n  validation: [{ port: 8443, ocsp: {} }]\n`);
  assert.deepEqual(val3, ['GatewayOptions spec.validation[0].port: validators check client certificates: port 8443 has no MUTUAL or ISTIO_MUTUAL server']);
  // Two GatewayOptions.
  assert.match(problems(`${GW(SIMPLE_SERVER)}\n---\napiVersion: meshcert.dev/v1\nkind: GatewayOptions\n---\napiVersion: meshcert.dev/v1\nkind: GatewayOptions\n`)[0]!, /a second GatewayOptions \(the first is document 2\)/);
});

test('AuthorizationPolicy: actions, wildcards and condition keys are checked, never ignored', () => {
  const ap = (spec: string) => `${GW(SIMPLE_SERVER)}\n---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: { name: p }\nspec: ${spec}\n`;
  assert.match(problems(ap('{ action: CUSTOM, provider: { name: ext } }'))[0]!, /action CUSTOM is not supported by meshcert/);
  assert.match(problems(ap('{ rules: [{ from: [{ source: { principals: ["a*b"] } }] }] }'))[0]!, /principals\[0\]: principal "a\*b": "\*" may only be the whole value, or start or end it/);
  assert.match(problems(ap('{ rules: [{ when: [{ key: "request.auth.claims[iss]", values: [x] }] }] }'))[0]!, /when\[0\]\.key: condition key "request\.auth\.claims\[iss\]" is not supported/);
  assert.match(problems(ap('{ rules: [{ from: [{ source: { requestPrincipals: ["*"] } }] }] }'))[0]!, /requestPrincipals: not supported by meshcert/);
  assert.match(problems(ap('{ rules: [{ from: [{ source: { ipBlocks: ["10.0.0.0/33"] } }] }] }'))[0]!, /ipBlocks\[0\]: expected an IP address or CIDR block/);
  const c = parseGatewayFile(ap('{ action: deny, rules: [{ to: [{ operation: { notPaths: ["/public*"], ports: ["8443"] } }] }] }'), 'gw.yaml');
  assert.equal(c.authorizationPolicies[0]!.spec.action, 'DENY');
});

test('kubectl output: a List of resources with status and server-side metadata loads', () => {
  const c = parseGatewayFile(
    `apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: Gateway
  metadata: { name: edge, uid: abc, resourceVersion: "12", generation: 1, creationTimestamp: "2024-01-01T00:00:00Z" }
  spec: { servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }] }
  status: {}
`,
    'list.yaml',
  );
  assert.equal(c.gateways[0]!.name, 'edge');
});

test('messages say "required" for a missing field and explain a malformed upstream', () => {
  const opts = (upstreams: string) => `${GW(SIMPLE_SERVER)}\n---\napiVersion: meshcert.dev/v1\nkind: GatewayOptions\nspec: { upstreams: ${upstreams} }\n`;
  assert.deepEqual(problems(opts('{ app: 8080 }')), ['document 2 (GatewayOptions): spec.upstreams.app: expected an address such as 127.0.0.1:8080, or { address, port }; got 8080']);
  assert.deepEqual(problems(opts('{ app: { port: 80, x: 1 } }')), [
    'document 2 (GatewayOptions): spec.upstreams.app.address: required',
    'document 2 (GatewayOptions): spec.upstreams.app.x: unknown field',
  ]);
  assert.deepEqual(problems(`${GW(SIMPLE_SERVER)}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: v }\nspec: { gateways: [edge], http: [{ match: [{ uri: { prefix: / } }] }] }\n`), [
    'document 2 (VirtualService v): spec.hosts: required',
    'document 2 (VirtualService v): spec.http[0].route: required',
  ]);
  const ok = parseGatewayFile(opts('{ app: { address: "::1", port: 80 }, b: "[::1]:81", c: backend.internal }'), 'gw.yaml');
  assert.deepEqual(ok.options.upstreams, { app: { host: '::1', port: 80 }, b: { host: '::1', port: 81 }, c: { host: 'backend.internal' } });
});
