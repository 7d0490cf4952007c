import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GatewayRouter, normalizeHost, parseGatewayFile, pickDestination } from './index.js';

const FILE = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:
  - port: { number: 8443, name: exact, protocol: HTTPS }
    hosts: [app.example.test]
    tls: { mode: SIMPLE, credentialName: app }
  - port: { number: 8443, name: wild, protocol: HTTPS }
    hosts: ["*.example.test"]
    tls: { mode: SIMPLE, credentialName: wild }
  - port: { number: 8443, name: any, protocol: HTTPS }
    hosts: ["*"]
    tls: { mode: SIMPLE, credentialName: fallback }
  - port: { number: 8080, name: http, protocol: HTTP }
    hosts: ["*"]
  - port: { number: 9443, name: pt, protocol: TLS }
    hosts: ["*.db.test"]
    tls: { mode: PASSTHROUGH }
  - port: { number: 9000, name: tcp, protocol: TCP }
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: wild }
spec:
  hosts: ["*.wild.example.test"]
  gateways: [edge]
  http:
  - route: [{ destination: { host: wild-backend } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: [app.example.test]
  gateways: [edge]
  http:
  - match: [{ uri: { exact: /exact } }, { uri: { regex: "/re/[0-9]+" } }]
    route: [{ destination: { host: app-backend, port: { number: 8080 } } }]
  - match: [{ uri: { prefix: /api/ }, method: { exact: POST }, headers: { x-env: { prefix: pr } } }]
    rewrite: { uri: /v2/ }
    route: [{ destination: { host: app-backend, port: { number: 8443 } } }]
  - match: [{ uri: { prefix: /Case }, ignoreUriCase: true, queryParams: { debug: { exact: "1" } } }]
    route: [{ destination: { host: app-backend, port: { number: 8080 }, subset: v2 } }]
  - match: [{ headers: { x-canary: {} }, port: 8080 }]
    route:
    - { destination: { host: app-backend, port: { number: 8080 } }, weight: 1 }
    - { destination: { host: wild-backend }, weight: 3 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db }
spec:
  hosts: ["*.db.test"]
  gateways: [edge]
  tls:
  - match: [{ sniHosts: ["*.db.test"] }]
    route: [{ destination: { host: db-any, port: { number: 5432 } } }]
  - match: [{ sniHosts: [main.db.test], port: 9443 }]
    route: [{ destination: { host: db-main, port: { number: 5432 } } }]
  tcp:
  - match: [{ port: 9000 }]
    route: [{ destination: { host: db-any, port: { number: 5432 } } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: app-backend }
spec:
  host: app-backend
  trafficPolicy:
    tls: { mode: SIMPLE }
    portLevelSettings: [{ port: { number: 8443 }, tls: { mode: MUTUAL, credentialName: client } }]
  subsets:
  - name: v2
    trafficPolicy: { tls: { mode: DISABLE } }
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams:
    app-backend: 127.0.0.1
    wild-backend: "[::1]:7000"
    db-any: 10.0.0.1
    db-main: 10.0.0.2:6432
`;

const router = new GatewayRouter(parseGatewayFile(FILE, 'routes.yaml'));

test('servers by SNI: exact beats wildcard, * last; no SNI takes the * server', () => {
  assert.equal(router.selectServer(8443, 'app.example.test')?.server.port.name, 'exact');
  assert.equal(router.selectServer(8443, 'APP.example.test.')?.server.port.name, 'exact');
  assert.equal(router.selectServer(8443, 'x.y.example.test')?.server.port.name, 'wild');
  assert.equal(router.selectServer(8443, 'example.test')?.server.port.name, 'any');
  assert.equal(router.selectServer(8443)?.server.port.name, 'any');
  assert.equal(router.selectServer(9443, 'other.test'), undefined);
  assert.equal(router.selectServer(9443)?.server.port.name, 'pt', 'the only server of a port takes connections without SNI');
  assert.equal(router.selectServer(1234, 'app.example.test'), undefined);
  assert.deepEqual(router.ports(), [8080, 8443, 9000, 9443]);
});

test('HTTP routes: host without port, exact VirtualService host over wildcard, first matching route', () => {
  const server = router.selectServer(8443, 'app.example.test')!;
  const exact = router.routeHttp({ port: 8443, server, authority: 'app.example.test:8443', path: '/exact?x=1' })!;
  assert.equal(exact.virtualService.name, 'app');
  assert.equal(exact.routeIndex, 0);
  assert.equal(exact.upstreamPath, '/exact?x=1');
  assert.deepEqual(exact.destinations[0]!.address, { host: '127.0.0.1', port: 8080 });
  assert.equal(exact.destinations[0]!.tls?.mode, 'SIMPLE');
  assert.equal(router.routeHttp({ port: 8443, server, authority: 'app.example.test', path: '/re/42' })?.routeIndex, 0);
  assert.equal(router.routeHttp({ port: 8443, server, authority: 'app.example.test', path: '/re/4x' }), undefined);

  // Method and header conditions, and the prefix rewrite.
  const api = { port: 8443, server, authority: 'app.example.test', path: '/api/items?q=1', method: 'POST', headers: { 'x-env': 'prod' } };
  const r = router.routeHttp(api)!;
  assert.equal(r.routeIndex, 1);
  assert.equal(r.upstreamPath, '/v2/items?q=1');
  assert.equal(r.destinations[0]!.tls?.mode, 'MUTUAL', 'port-level DestinationRule settings apply');
  assert.equal(router.routeHttp({ ...api, method: 'GET' }), undefined);
  assert.equal(router.routeHttp({ ...api, headers: { 'x-env': 'dev' } }), undefined);

  // ignoreUriCase, query parameters and a subset's policy.
  const c = router.routeHttp({ port: 8443, server, authority: 'app.example.test', path: '/case/x?debug=1' })!;
  assert.equal(c.routeIndex, 2);
  assert.equal(c.destinations[0]!.subset, 'v2');
  assert.equal(c.destinations[0]!.tls?.mode, 'DISABLE');
  assert.equal(router.routeHttp({ port: 8443, server, authority: 'app.example.test', path: '/case/x?debug=0' }), undefined);

  // A wildcard host goes to the wildcard VirtualService; another host gets no route.
  assert.equal(router.routeHttp({ port: 8443, server: router.selectServer(8443, 'a.example.test')!, authority: 'a.example.test', path: '/' }), undefined);
  const w = router.routeHttp({ port: 8443, server: router.selectServer(8443, 'a.wild.example.test')!, authority: 'a.wild.example.test', path: '/' })!;
  assert.equal(w.virtualService.name, 'wild');
  assert.deepEqual(w.destinations[0]!.address, { host: '::1', port: 7000 });
  assert.equal(w.destinations[0]!.port, 7000);
  assert.equal(router.routeHttp({ port: 8443, server: router.selectServer(8443, 'other.test')!, authority: 'other.test', path: '/' }), undefined);
});

test('plain HTTP: every server of the port, presence headers, port match and weighted destinations', () => {
  const r = router.routeHttp({ port: 8080, authority: 'app.example.test', path: '/anything', headers: { 'x-canary': '' } })!;
  assert.equal(r.routeIndex, 3);
  assert.deepEqual(r.destinations.map((d) => d.weight), [1, 3]);
  assert.equal(pickDestination(r.destinations, () => 0.1)!.host, 'app-backend');
  assert.equal(pickDestination(r.destinations, () => 0.5)!.host, 'wild-backend');
  assert.equal(router.routeHttp({ port: 8080, authority: 'app.example.test', path: '/anything' }), undefined);
  assert.equal(router.routeHttp({ port: 8443, server: router.selectServer(8443, 'app.example.test')!, authority: 'app.example.test', path: '/anything', headers: { 'x-canary': '1' } }), undefined, 'match.port 8080 only');
});

test('PASSTHROUGH by SNI (most specific sniHosts first) and TCP routes', () => {
  assert.equal(router.routeStream(9443, 'main.db.test')?.destinations[0]!.host, 'db-main');
  assert.deepEqual(router.routeStream(9443, 'main.db.test')?.destinations[0]!.address, { host: '10.0.0.2', port: 6432 });
  assert.equal(router.routeStream(9443, 'other.db.test')?.destinations[0]!.host, 'db-any');
  const tcp = router.routeStream(9000)!;
  assert.equal(tcp.kind, 'tcp');
  assert.deepEqual(tcp.destinations[0]!.address, { host: '10.0.0.1', port: 5432 });
  assert.equal(router.routeStream(9443, 'x.other.test'), undefined);
});

test('normalizeHost strips ports, brackets and a trailing dot', () => {
  assert.equal(normalizeHost('App.Test:8443'), 'app.test');
  assert.equal(normalizeHost('[::1]:8443'), '::1');
  assert.equal(normalizeHost('::1'), '::1');
  assert.equal(normalizeHost('app.test.'), 'app.test');
});

test('VirtualServices meeting on one domain (VS host ∩ server host) are merged in file order, as Envoy virtual hosts', () => {
  const r = new GatewayRouter(
    parseGatewayFile(
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: g }
spec:
  servers: [{ port: { number: 80, name: h, protocol: HTTP }, hosts: [app.test] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: any }
spec:
  hosts: ["*"]
  gateways: [g]
  http: [{ match: [{ uri: { prefix: /a } }], route: [{ destination: { host: a } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: exact }
spec:
  hosts: [app.test]
  gateways: [g]
  http: [{ match: [{ uri: { prefix: /b } }], route: [{ destination: { host: b } }] }]
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec: { upstreams: { a: "127.0.0.1:1", b: "127.0.0.1:2" } }
`,
      'merge.yaml',
    ),
  );
  assert.equal(r.routeHttp({ port: 80, authority: 'app.test', path: '/a' })?.virtualService.name, 'any');
  assert.equal(r.routeHttp({ port: 80, authority: 'app.test', path: '/b' })?.virtualService.name, 'exact');
  assert.equal(r.routeHttp({ port: 80, authority: 'other.test', path: '/a' }), undefined, 'outside the server hosts');
});
