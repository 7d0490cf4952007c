import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { parseServeConfig } from './serve-config.js';

/** CONFIG naming the file, with each expected problem listed (field path first). */
function configProblems(...lines: RegExp[]) {
  return (err: unknown): boolean => {
    assert.ok(isMeshError(err, ErrorCodes.CONFIG), `expected CONFIG, got ${String(err)}`);
    assert.match(err.message, /^serve\.yaml: /);
    for (const l of lines) assert.match(err.message, l);
    return true;
  };
}

const BASE = 'trustDomain: cluster.local\ngrpc: { listen: 127.0.0.1:0 }\n';

describe('serve config: additionalTrustDomains', () => {
  test('absent: none; given: names and optional CA folders; JWT issuers may map into any of the trust domains', () => {
    assert.deepEqual(parseServeConfig(BASE, 'serve.yaml').additionalTrustDomains, []);
    const cfg = parseServeConfig(
      `${BASE}additionalTrustDomains:
  - name: partner.example
    caDir: /etc/meshcert/partner
  - name: lab.example
auth:
  jwt:
    - { issuer: https://partner.example, audiences: [istio-ca], jwksFile: p.json, trustDomain: partner.example }
    - { issuer: https://kubernetes.default.svc, audiences: [istio-ca], jwksFile: k.json, trustDomain: cluster.local }
    - { issuer: https://other.example, audiences: [istio-ca], jwksFile: o.json }
`,
      'serve.yaml',
    );
    assert.deepEqual(cfg.additionalTrustDomains, [{ name: 'partner.example', caDir: '/etc/meshcert/partner' }, { name: 'lab.example' }]);
    assert.deepEqual(cfg.auth?.jwt.map((j) => j.trustDomain), ['partner.example', 'cluster.local', undefined]);
  });

  test('a trust domain listed twice, the main one listed again, a shared CA folder: each a CONFIG error naming its field', () => {
    assert.throws(
      () =>
        parseServeConfig(
          `${BASE}additionalTrustDomains:
  - name: cluster.local
  - name: partner.example
    caDir: ./ca/partner
  - name: partner.example
  - name: lab.example
    caDir: ca/partner/
`,
          'serve.yaml',
        ),
      configProblems(
        /additionalTrustDomains\[0\]\.name: "cluster\.local" is the main trustDomain/,
        /additionalTrustDomains\[2\]\.name: "partner\.example" is listed twice \(also additionalTrustDomains\[1\]\)/,
        /additionalTrustDomains\[3\]\.caDir: ca\/partner\/ is also the folder of additionalTrustDomains\[1\]/,
      ),
    );
  });

  test('names that are no trust domain, unknown keys, and JWT issuers mapped into a trust domain not configured', () => {
    assert.throws(
      () => parseServeConfig(`${BASE}additionalTrustDomains:\n  - name: Partner.Example\n  - name: ok.example\n    caDirectory: /x\n`, 'serve.yaml'),
      configProblems(/additionalTrustDomains\[0\]\.name: not a SPIFFE trust domain name/, /additionalTrustDomains\[1\]\.caDirectory: unknown field/),
    );
    assert.throws(
      () => parseServeConfig(`${BASE}auth:\n  jwt:\n    - { issuer: i, audiences: [a], jwksFile: j, trustDomain: partner.example }\n`, 'serve.yaml'),
      configProblems(/auth\.jwt\[0\]\.trustDomain: "partner\.example" is not a trust domain of this server: use trustDomain \("cluster\.local"\), or add it to additionalTrustDomains/),
    );
    assert.throws(
      () =>
        parseServeConfig(
          `${BASE}additionalTrustDomains: [{ name: lab.example }]\nauth:\n  jwt:\n    - { issuer: i, audiences: [a], jwksFile: j, trustDomain: partner.example }\n`,
          'serve.yaml',
        ),
      configProblems(/auth\.jwt\[0\]\.trustDomain: "partner\.example" is not a trust domain of this server: use trustDomain \("cluster\.local"\) or one of additionalTrustDomains \("lab\.example"\)/),
    );
  });

  test('a config with only an sds section runs no CA, so it cannot have additional trust domains', () => {
    assert.throws(
      () => parseServeConfig('additionalTrustDomains: [{ name: partner.example }]\nsds: { secrets: ./secrets }\n', 'serve.yaml'),
      (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && e.subject === 'additionalTrustDomains' && /needs a mesh CA/.test(e.message),
    );
  });
});
