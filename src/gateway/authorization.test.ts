import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseGatewayFile } from '../config/index.js';
import { AuthorizationEngine, principalOf, valueMatches, type RequestFacts } from './authorization.js';

/** A gateway file needs a Gateway; the policies under test follow it. */
const GATEWAY = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: ["*"]
    tls: { mode: SIMPLE, credentialName: cred }
---`;

function engine(policiesYaml: string): AuthorizationEngine {
  return new AuthorizationEngine(parseGatewayFile(`${GATEWAY}\n${policiesYaml}`, 'policies.yaml').authorizationPolicies);
}

function req(over: Partial<RequestFacts> = {}): RequestFacts {
  return {
    principal: 'cluster.local/ns/shop/sa/cart',
    remoteAddress: '127.0.0.1',
    port: 8443,
    host: 'pay.example.test',
    path: '/pay/now',
    method: 'POST',
    sni: 'pay.example.test',
    headers: {},
    ...over,
  };
}

const PAY_ONLY = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: pay-only }
spec:
  selector: { matchLabels: { app: gw } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/cart"] } }]
    to: [{ operation: { paths: ["/pay*"], methods: [GET, POST] } }]
`;

describe('AuthorizationPolicy at the gateway', () => {
  it("matches values as Istio does: exact, prefix*, *suffix, and * for 'present'", () => {
    assert.ok(valueMatches('/pay*', '/pay/now'));
    assert.ok(valueMatches('*/sa/cart', 'cluster.local/ns/shop/sa/cart'));
    assert.ok(valueMatches('*', 'x'));
    assert.ok(!valueMatches('*', ''));
    assert.ok(!valueMatches('/pay', '/pay/now'));
    assert.ok(valueMatches('*.Example.test', 'a.example.TEST', true));
    assert.equal(principalOf('spiffe://cluster.local/ns/a/sa/b'), 'cluster.local/ns/a/sa/b');
    assert.equal(principalOf(undefined), '');
  });

  it('no policy allows everything; an ALLOW policy admits only what it matches, with a reason otherwise', () => {
    assert.deepEqual(new AuthorizationEngine([]).evaluate(req()), { allowed: true });
    const e = engine(PAY_ONLY);
    assert.deepEqual(e.evaluate(req()), { allowed: true, policy: 'pay-only' });
    assert.deepEqual(e.evaluate(req({ method: 'GET', path: '/pay' })), { allowed: true, policy: 'pay-only' });
    const wrongMethod = e.evaluate(req({ method: 'DELETE' }));
    assert.equal(wrongMethod.allowed, false);
    assert.match((wrongMethod as { reason: string }).reason, /no ALLOW policy matches principal cluster.local\/ns\/shop\/sa\/cart for DELETE pay.example.test\/pay\/now/);
    assert.equal(e.evaluate(req({ path: '/admin' })).allowed, false);
    assert.equal(e.evaluate(req({ principal: 'cluster.local/ns/shop/sa/other' })).allowed, false);
    const anon = e.evaluate(req({ principal: '' }));
    assert.match((anon as { reason: string }).reason, /a caller without a verified identity/);
  });

  it('DENY wins over ALLOW; notPrincipals ["*"] denies callers without an identity', () => {
    const e = engine(`${PAY_ONLY}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: { name: no-refunds, namespace: shop }
spec:
  action: DENY
  rules:
  - to: [{ operation: { paths: ["/pay/refund*"] } }]
  - from: [{ source: { notPrincipals: ["*"] } }]
`);
    const refund = e.evaluate(req({ path: '/pay/refund/7' }));
    assert.deepEqual(refund, { allowed: false, policy: 'shop/no-refunds', reason: 'denied by DENY policy shop/no-refunds (rule 1)' });
    const anon = e.evaluate(req({ principal: '' }));
    assert.deepEqual(anon, { allowed: false, policy: 'shop/no-refunds', reason: 'denied by DENY policy shop/no-refunds (rule 2)' });
    assert.equal(e.evaluate(req()).allowed, true);
  });

  it('an ALLOW policy without rules allows nothing; `rules: [{}]` allows everything', () => {
    const nothing = engine(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-nothing }
spec: { action: ALLOW }
`);
    assert.equal(nothing.evaluate(req()).allowed, false);
    const everything = engine(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-all }
spec: { rules: [{}] }
`);
    assert.equal(everything.evaluate(req({ principal: '' })).allowed, true);
  });

  it('hosts ignore case, namespaces come from the principal, ipBlocks and when-conditions apply', () => {
    const e = engine(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: mixed }
spec:
  action: ALLOW
  rules:
  - from: [{ source: { namespaces: [shop], ipBlocks: [10.0.0.0/8, "::1"] } }]
    to: [{ operation: { hosts: ["*.Example.test"], notPaths: ["/private*"], ports: ["8443"] } }]
    when:
    - { key: "request.headers[x-env]", values: [prod] }
    - { key: connection.sni, notValues: ["evil.*"] }
`);
    const ok = req({ remoteAddress: '::ffff:10.1.2.3', headers: { 'x-env': 'prod' } });
    assert.equal(e.evaluate(ok).allowed, true);
    assert.equal(e.evaluate({ ...ok, remoteAddress: '::1' }).allowed, true);
    assert.equal(e.evaluate({ ...ok, remoteAddress: '192.168.1.1' }).allowed, false, 'outside ipBlocks');
    assert.equal(e.evaluate({ ...ok, principal: 'cluster.local/ns/web/sa/x' }).allowed, false, 'other namespace');
    assert.equal(e.evaluate({ ...ok, path: '/private/x' }).allowed, false, 'notPaths');
    assert.equal(e.evaluate({ ...ok, port: 9443 }).allowed, false, 'ports');
    assert.equal(e.evaluate({ ...ok, headers: { 'x-env': 'dev' } }).allowed, false, 'header condition');
    assert.equal(e.evaluate({ ...ok, sni: 'evil.example.test' }).allowed, false, 'sni notValues');
    assert.equal(e.evaluate({ ...ok, host: 'other.test' }).allowed, false, 'hosts');
  });
});
