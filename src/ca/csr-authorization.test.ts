import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { Csr, SpiffeId, generateKeyPair, keyUsageFlags, toSigningKey } from '../pki/index.js';
import { authorizeCsr, dnsNameCovered, identityMatches, requestedNames, type DnsGrant } from './csr-authorization.js';
import type { CallerIdentity } from './registration-types.js';
import { openssl } from '../../test/helpers/tools.js';
import { skipUnlessCi } from '../../test/helpers/peers.js';

const ME = 'spiffe://cluster.local/ns/web/sa/frontend';
const caller: CallerIdentity = { spiffeId: SpiffeId.parse(ME), method: 'jwt', principal: 'jwt iss=test sub=x' };
const GRANTS: DnsGrant[] = [
  { identity: 'spiffe://cluster.local/ns/web/sa/*', dnsNames: ['*.web.svc.cluster.local', 'web.example.com'] },
  { identity: ME, dnsNames: ['frontend.internal'], ipAddresses: ['10.0.0.7', '2001:DB8:0:0::7'] },
  { identity: 'spiffe://cluster.local/ns/db/sa/pg', dnsNames: ['pg.db.svc'] },
];

type Name = x509.JsonGeneralName;

async function csrWith(extensions: x509.Extension[], key?: KeyObject): Promise<Csr> {
  const sk = await toSigningKey(key ?? generateKeyPair('ec-p256').privateKey);
  const req = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=ignored, O=ignored',
    keys: { privateKey: sk.cryptoKey, publicKey: sk.publicCryptoKey },
    signingAlgorithm: sk.scheme.webcrypto,
    extensions,
  });
  return Csr.parse(new Uint8Array(req.rawData));
}

const san = (names: Name[]) => new x509.SubjectAlternativeNameExtension(names, false);
const uri = (value: string): Name => ({ type: 'url', value });
const dns = (value: string): Name => ({ type: 'dns', value });

function deniedWith(code: string, pattern: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isMeshError(err), `expected a MeshError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('authorizeCsr', () => {
  test('the caller\'s own SPIFFE ID, or no URI SAN at all, is authorized for the caller\'s ID', async () => {
    const own = authorizeCsr(await csrWith([san([uri(ME)])]), caller, GRANTS);
    assert.deepEqual({ id: own.spiffeId, dns: own.dnsNames, ips: own.ipAddresses }, { id: ME, dns: [], ips: [] });
    assert.deepEqual(own.requested, { uris: [ME], dnsNames: [], ipAddresses: [] });
    const none = authorizeCsr(await csrWith([]), caller, GRANTS);
    assert.equal(none.spiffeId, ME);
  });

  test('another identity, or more than one URI SAN, is PERMISSION_DENIED', async () => {
    await assert.rejects(async () => authorizeCsr(await csrWith([san([uri('spiffe://cluster.local/ns/kube-system/sa/admin')])]), caller, GRANTS),
      deniedWith(ErrorCodes.PERMISSION_DENIED, /asks for identity "spiffe:\/\/cluster\.local\/ns\/kube-system\/sa\/admin", but the caller authenticated as spiffe:\/\/cluster\.local\/ns\/web\/sa\/frontend/));
    await assert.rejects(async () => authorizeCsr(await csrWith([san([uri(ME), uri('spiffe://cluster.local/ns/web/sa/other')])]), caller, GRANTS),
      deniedWith(ErrorCodes.PERMISSION_DENIED, /2 URI SANs .*exactly one/));
    await assert.rejects(async () => authorizeCsr(await csrWith([san([uri('https://example.com/')])]), caller, GRANTS), deniedWith(ErrorCodes.PERMISSION_DENIED, /asks for identity/));
    await assert.rejects(async () => authorizeCsr(await csrWith([san([{ type: 'email', value: 'a@example.com' }])]), caller, GRANTS),
      deniedWith(ErrorCodes.PERMISSION_DENIED, /SANs of a type this CA does not issue \(email:a@example\.com\)/));
  });

  test('DNS SANs only where a grant covers identity and name; names are normalized', async () => {
    const ok = authorizeCsr(
      await csrWith([san([uri(ME), dns('a.web.svc.cluster.local'), dns('WEB.example.com.'), dns('frontend.internal'), dns('*.web.svc.cluster.local'), dns('web.example.com')])]),
      caller,
      GRANTS,
    );
    assert.deepEqual(ok.dnsNames, ['a.web.svc.cluster.local', 'web.example.com', 'frontend.internal', '*.web.svc.cluster.local']);
    await assert.rejects(async () => authorizeCsr(await csrWith([san([dns('a.b.web.svc.cluster.local')])]), caller, GRANTS),
      deniedWith(ErrorCodes.PERMISSION_DENIED, /DNS name "a\.b\.web\.svc\.cluster\.local" is not granted to spiffe:\/\/cluster\.local\/ns\/web\/sa\/frontend/));
    await assert.rejects(async () => authorizeCsr(await csrWith([san([dns('pg.db.svc')])]), caller, GRANTS), deniedWith(ErrorCodes.PERMISSION_DENIED, /"pg\.db\.svc" is not granted/));
    await assert.rejects(async () => authorizeCsr(await csrWith([san([dns('web.example.com')])]), caller, []), deniedWith(ErrorCodes.PERMISSION_DENIED, /not granted/));
    await assert.rejects(async () => authorizeCsr(await csrWith([san([dns('bad..name')])]), caller, GRANTS), deniedWith(ErrorCodes.INVALID_ARGUMENT, /not a valid DNS name/));
  });

  test('IP SANs only where granted', async () => {
    const ok = authorizeCsr(await csrWith([san([{ type: 'ip', value: '10.0.0.7' }])]), caller, GRANTS);
    assert.deepEqual(ok.ipAddresses, ['10.0.0.7']);
    await assert.rejects(async () => authorizeCsr(await csrWith([san([{ type: 'ip', value: '10.0.0.8' }])]), caller, GRANTS),
      deniedWith(ErrorCodes.PERMISSION_DENIED, /IP address 10\.0\.0\.8 is not granted/));
  });

  test('never a CA, never keyCertSign or cRLSign', async () => {
    await assert.rejects(async () => authorizeCsr(await csrWith([new x509.BasicConstraintsExtension(true, undefined, true)]), caller, GRANTS),
      deniedWith(ErrorCodes.PERMISSION_DENIED, /asks for a CA certificate \(basicConstraints CA:true\)/));
    await assert.rejects(async () => authorizeCsr(await csrWith([new x509.KeyUsagesExtension(keyUsageFlags(['digitalSignature', 'keyCertSign']), true)]), caller, GRANTS),
      deniedWith(ErrorCodes.PERMISSION_DENIED, /key usage keyCertSign, which only a CA may have/));
    await assert.rejects(async () => authorizeCsr(await csrWith([new x509.KeyUsagesExtension(keyUsageFlags(['cRLSign']), false)]), caller, GRANTS),
      deniedWith(ErrorCodes.PERMISSION_DENIED, /cRLSign/));
    // Harmless requests are accepted (and ignored: the policy sets the certificate's own values).
    const fine = await csrWith([
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(keyUsageFlags(['digitalSignature', 'keyEncipherment']), true),
      new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.2'], false),
      new x509.Extension('1.2.3.4.5', false, new Uint8Array([5, 0])),
    ]);
    assert.equal(authorizeCsr(fine, caller, GRANTS).spiffeId, ME);
  });

  test('an unknown critical extension is INVALID_ARGUMENT; so are a bad signature and a weak key', async () => {
    await assert.rejects(async () => authorizeCsr(await csrWith([new x509.Extension('1.2.3.4.5', true, new Uint8Array([5, 0]))]), caller, GRANTS),
      deniedWith(ErrorCodes.INVALID_ARGUMENT, /critical extension 1\.2\.3\.4\.5, which this CA does not understand/));
    const good = await csrWith([san([uri(ME)])]);
    const bad = Buffer.from(good.der);
    bad[bad.length - 3]! ^= 0x40;
    assert.throws(() => authorizeCsr(Csr.parse(bad), caller, GRANTS), (e: unknown) => isMeshError(e, ErrorCodes.CSR_SIGNATURE));
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    await assert.rejects(async () => authorizeCsr(await csrWith([], weak), caller, GRANTS), (e: unknown) => isMeshError(e, ErrorCodes.KEY_TOO_WEAK) && /1024 bits/.test(e.message));
  });

  test('IPv6 SANs compare in canonical form', async () => {
    const ok = authorizeCsr(await csrWith([san([{ type: 'ip', value: '2001:db8::7' }])]), caller, GRANTS);
    assert.deepEqual(ok.ipAddresses, ['2001:db8::7']);
  });

  test('malformed requested extensions are INVALID_ARGUMENT, not a crash', async () => {
    const truncated = await csrWith([new x509.Extension('2.5.29.17', false, new Uint8Array([0x30, 0x05, 0x82, 0x10, 0x61]))]);
    assert.throws(() => authorizeCsr(truncated, caller, GRANTS), deniedWith(ErrorCodes.INVALID_ARGUMENT, /extension 2\.5\.29\.17 is malformed: /));
    const badIp = await csrWith([new x509.Extension('2.5.29.17', false, new Uint8Array([0x30, 0x05, 0x87, 0x03, 10, 0, 0]))]);
    assert.throws(() => authorizeCsr(badIp, caller, GRANTS), deniedWith(ErrorCodes.INVALID_ARGUMENT, /IP SAN that is neither IPv4 nor IPv6 \(0a0000\)/));
    const badKu = await csrWith([new x509.Extension('2.5.29.15', true, new Uint8Array([0x04, 0x00]))]);
    assert.throws(() => authorizeCsr(badKu, caller, GRANTS), deniedWith(ErrorCodes.INVALID_ARGUMENT, /2\.5\.29\.15 is malformed/));
  });

  test('reads CSRs made by OpenSSL the same way (interop), and agrees with the x509 library on requested SANs', async (t) => {
    const make = (exts: string[]) => {
      const args = ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-subj', '/O=openssl'];
      for (const e of exts) args.push('-addext', e);
      const r = openssl(args);
      assert.equal(r.status, 0, r.stderr);
      return Csr.parse(r.stdout, 'openssl CSR');
    };
    let csr: Csr;
    try {
      csr = make([`subjectAltName=URI:${ME},DNS:a.web.svc.cluster.local,IP:10.0.0.7,IP:2001:db8::7`, 'basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=clientAuth,serverAuth']);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return t.skip(skipUnlessCi('openssl is not installed') || undefined);
      throw err;
    }
    const ok = authorizeCsr(csr, caller, GRANTS);
    assert.deepEqual(ok.requested, { uris: [ME], dnsNames: ['a.web.svc.cluster.local'], ipAddresses: ['10.0.0.7', '2001:db8::7'] });
    assert.deepEqual(ok.dnsNames, ['a.web.svc.cluster.local']);
    assert.deepEqual(ok.ipAddresses, ['10.0.0.7', '2001:db8::7']);
    const lib = csr.requestedSans;
    assert.deepEqual(requestedNames(csr), { uris: lib.uri, dnsNames: lib.dns, ipAddresses: lib.ip.map((ip) => (ip.includes(':') ? '2001:db8::7' : ip)) });
    assert.throws(() => authorizeCsr(make(['basicConstraints=critical,CA:TRUE']), caller, GRANTS), deniedWith(ErrorCodes.PERMISSION_DENIED, /CA:true/));
    assert.throws(() => authorizeCsr(make(['keyUsage=critical,keyCertSign,cRLSign']), caller, GRANTS), deniedWith(ErrorCodes.PERMISSION_DENIED, /keyCertSign and cRLSign/));
    assert.throws(() => authorizeCsr(make(['subjectAltName=email:a@example.com,RID:1.2.3.4']), caller, GRANTS), deniedWith(ErrorCodes.PERMISSION_DENIED, /email:a@example\.com, registeredID/));
    assert.throws(() => authorizeCsr(make(['1.2.3.4=critical,ASN1:NULL']), caller, GRANTS), deniedWith(ErrorCodes.INVALID_ARGUMENT, /critical extension 1\.2\.3\.4/));
  });

  test('pattern helpers', () => {
    assert.ok(identityMatches('spiffe://td/ns/web/sa/*', 'spiffe://td/ns/web/sa/x'));
    assert.ok(!identityMatches('spiffe://td/ns/web/sa/*', 'spiffe://td/ns/webx/sa/x'));
    assert.ok(identityMatches('spiffe://td/ns/web/sa/x', 'spiffe://td/ns/web/sa/x'));
    assert.ok(!identityMatches('spiffe://td/ns/web/sa/x', 'spiffe://td/ns/web/sa/xy'));
    assert.ok(dnsNameCovered('*.a.svc', 'b.a.svc'));
    assert.ok(dnsNameCovered('*.a.svc', '*.a.svc'));
    assert.ok(!dnsNameCovered('*.a.svc', 'a.svc'));
    assert.ok(!dnsNameCovered('*.a.svc', 'c.b.a.svc'));
    assert.ok(!dnsNameCovered('*.a.svc', 'ba.svc'));
    assert.ok(dnsNameCovered('Exact.Example.', 'exact.example'));
  });
});
