import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseGatewayFile } from '../config/index.js';
import { gatewayWarnings } from './gateway.js';

test('what the gateway cannot apply is said at load, not silently ignored: retryRemoteLocalities (retries themselves are applied)', () => {
  const config = parseGatewayFile(
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:
  - port: { number: 8080, name: http, protocol: HTTP }
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - route: [{ destination: { host: a } }]
  - retries: { attempts: 3, perTryTimeout: 1s }
    route: [{ destination: { host: a } }]
  - retries: { attempts: 0 }
    route: [{ destination: { host: a } }]
  - retries: { attempts: 2, retryRemoteLocalities: true }
    route: [{ destination: { host: a } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: a }
spec:
  host: a
  trafficPolicy: { connectionPool: { http: { http2MaxRequests: 10, maxRequestsPerConnection: 5, maxConcurrentStreams: 100 } } }
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec: { upstreams: { a: 127.0.0.1:9 } }
`,
    'gw.yaml',
  );
  assert.deepEqual(gatewayWarnings(config), [
    'document 2 (VirtualService app) http[3].retries.retryRemoteLocalities: no effect in meshcert gateway (it has no locality-aware load balancing)',
    'document 3 (DestinationRule a) trafficPolicy.connectionPool.http.maxConcurrentStreams: not applied by meshcert gateway; meshcert envoy-config renders it for Envoy',
  ]);
});
