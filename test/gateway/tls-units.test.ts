// Small pure pieces of the TLS side: SNI → server selection, Istio TLS settings → Node options, the leaf-only CRL
// check, the stapling verdict's cache and expiry instant.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/index.js';
import { Crl } from '../../src/pki/index.js';
import { ServerSelector, checkLeafCrl, nodeTlsSettings, StaplingCache, type ServingCredential } from '../../src/gateway/index.js';
import { HOUR, gatewayPki, makeCrl, makeStaple } from '../sds/secret-fixtures.js';

describe('ServerSelector', () => {
  const a = { id: 'a', hosts: ['app.example.com'] };
  const w = { id: 'w', hosts: ['*.example.com'] };
  const ww = { id: 'ww', hosts: ['*.api.example.com'] };
  const star = { id: 'star', hosts: ['*'] };
  test('exact beats wildcard, the longer wildcard wins, * catches the rest', () => {
    const s = new ServerSelector([w, a, ww, star]);
    assert.equal(s.select('app.example.com')?.server.id, 'a');
    assert.equal(s.select('APP.example.com')?.server.id, 'a');
    assert.equal(s.select('x.api.example.com')?.server.id, 'ww');
    assert.equal(s.select('b.example.com')?.server.id, 'w');
    assert.equal(s.select('example.com')?.server.id, 'star', '*.example.com does not cover example.com');
    assert.equal(s.select('other.test')?.server.id, 'star');
    assert.equal(s.select(undefined)?.server.id, 'star');
  });
  test('without *: an unknown name has no server; no SNI goes to the first server', () => {
    const s = new ServerSelector([a, w]);
    assert.equal(s.select('other.test'), undefined);
    assert.equal(s.select(undefined)?.server.id, 'a');
  });
});

describe('nodeTlsSettings', () => {
  test('Istio names become Node options', () => {
    const r = nodeTlsSettings({
      minProtocolVersion: 'TLSV1_2',
      maxProtocolVersion: 'TLSV1_3',
      cipherSuites: ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256'],
      ecdhCurves: ['X25519', 'P-256'],
      signatureAlgorithms: ['ecdsa_secp256r1_sha256', 'rsa_pss_rsae_sha256'],
    });
    assert.deepEqual(r.options, {
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256',
      ecdhCurve: 'X25519:P-256',
      sigalgs: 'ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256',
    });
    assert.deepEqual(r.warnings, []);
  });
  test('TLS_AUTO keeps TLS 1.2 as the floor; cipher suites with TLS 1.3 only are a warning', () => {
    assert.deepEqual(nodeTlsSettings({ minProtocolVersion: 'TLS_AUTO' }).options, { minVersion: 'TLSv1.2' });
    const r = nodeTlsSettings({ minProtocolVersion: 'TLSV1_3', cipherSuites: ['AES128-GCM-SHA256'] });
    assert.match(r.warnings[0]!, /TLS 1\.2 and older only/);
  });
});

describe('checkLeafCrl (onlyVerifyLeafCertCrl)', () => {
  test('revoked, not listed, no CRL of the issuer, stale', async () => {
    const pki = await gatewayPki();
    const other = await pki.ca.issueServer(['x.example.com']);
    const crl = Crl.fromDer(await makeCrl(pki.ca, [pki.leaf.cert.serial]));
    const now = new Date();
    assert.equal(checkLeafCrl(pki.leaf.cert, pki.ca.cert, [crl], now)?.ok, false);
    assert.equal((checkLeafCrl(pki.leaf.cert, pki.ca.cert, [crl], now) as { reason: string }).reason, 'cert_revoked');
    assert.equal(checkLeafCrl(other.cert, pki.ca.cert, [crl], now), null);
    const rootCrl = Crl.fromDer(await makeCrl(pki.root, []));
    assert.equal((checkLeafCrl(other.cert, pki.ca.cert, [rootCrl], now) as { reason: string }).reason, 'unable_to_get_crl');
    assert.equal((checkLeafCrl(other.cert, pki.ca.cert, [crl], new Date(now.getTime() + 48 * HOUR)) as { reason: string }).reason, 'crl_has_expired');
  });
});

describe('StaplingCache', () => {
  test('one judgement until the staple\'s nextUpdate, then the verdict follows the clock', async () => {
    const pki = await gatewayPki();
    const now = Date.now();
    const staple = await makeStaple(pki.ca, pki.leaf.cert, { nextUpdate: new Date(now + HOUR) });
    const cred: ServingCredential = {
      name: 'x',
      source: 'test',
      chain: pki.leaf.chain,
      privateKey: pki.leaf.privateKey,
      certPem: pki.leaf.chainPem,
      keyPem: pki.leaf.keyPem,
      staple,
      issuer: pki.ca.cert,
      declaredPolicy: 'PREFERRED',
      version: '1',
    };
    const clock = new ManualClock(now);
    const cache = new StaplingCache(clock);
    const first = cache.decide(cred);
    assert.equal(first.action, 'staple');
    assert.equal(cache.decide(cred), first, 'cached: the same verdict object');
    clock.advance(HOUR + 2000);
    const later = cache.decide(cred);
    assert.deepEqual([later.action, later.state], ['fail-handshake', 'expired']);
  });
});
