import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseGatewayFile } from '../config/index.js';
import { gatewayWarnings } from './gateway.js';

test('VirtualService retries, which the gateway does not apply, are said at load, not silently ignored', () => {
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
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec: { upstreams: { a: 127.0.0.1:9 } }
`,
    'gw.yaml',
  );
  assert.deepEqual(gatewayWarnings(config), [
    'document 2 (VirtualService app) http[1].retries: not applied by meshcert gateway (it retries only a body-less request whose reused upstream connection was reset); meshcert envoy-config renders it for Envoy',
  ]);
});
