import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { TestCA } from '../../test/helpers/test-ca.js';
import {
  SpiffeId,
  SpiffeIdError,
  SvidViolation,
  TrustDomain,
  assertSigningCertificate,
  assertX509Svid,
  checkSigningCertificate,
  checkX509Svid,
  spiffeIdOf,
  type SpiffeIdErrorReason,
} from './index.js';

const VALID: Array<[string, string, string]> = [
  // text, trust domain, path
  ['spiffe://example.org', 'example.org', ''],
  ['spiffe://cluster.local/ns/default/sa/web', 'cluster.local', '/ns/default/sa/web'],
  ['spiffe://trust_domain-1.example/Path_With.Upper-Case/x', 'trust_domain-1.example', '/Path_With.Upper-Case/x'],
  ['spiffe://a/.../..a/a..', 'a', '/.../..a/a..'],
  ['spiffe://123/9eebccd2-12bf-40a6-b262-65fe0487d453', '123', '/9eebccd2-12bf-40a6-b262-65fe0487d453'],
];

const INVALID: Array<[string, SpiffeIdErrorReason]> = [
  ['', SpiffeIdError.EMPTY],
  ['http://example.org/x', SpiffeIdError.WRONG_SCHEME],
  ['SPIFFE://example.org/x', SpiffeIdError.WRONG_SCHEME],
  ['Spiffe://example.org/x', SpiffeIdError.WRONG_SCHEME],
  ['spiffe:/example.org/x', SpiffeIdError.WRONG_SCHEME],
  ['spiffe:example.org', SpiffeIdError.WRONG_SCHEME],
  ['example.org/ns/a', SpiffeIdError.WRONG_SCHEME],
  ['spiffe://', SpiffeIdError.MISSING_TRUST_DOMAIN],
  ['spiffe:///ns/a', SpiffeIdError.MISSING_TRUST_DOMAIN],
  ['spiffe://Example.org/x', SpiffeIdError.BAD_TRUST_DOMAIN_CHAR],
  ['spiffe://exa mple.org', SpiffeIdError.BAD_TRUST_DOMAIN_CHAR],
  ['spiffe://exämple.org', SpiffeIdError.BAD_TRUST_DOMAIN_CHAR],
  ['spiffe://ex%41mple.org', SpiffeIdError.BAD_TRUST_DOMAIN_CHAR],
  ['spiffe://[::1]/x', SpiffeIdError.HAS_PORT],
  ['spiffe://example.org:8443/x', SpiffeIdError.HAS_PORT],
  ['spiffe://example.org:/x', SpiffeIdError.HAS_PORT],
  ['spiffe://user@example.org/x', SpiffeIdError.HAS_USERINFO],
  ['spiffe://example.org/', SpiffeIdError.TRAILING_SLASH],
  ['spiffe://example.org/ns/a/', SpiffeIdError.TRAILING_SLASH],
  ['spiffe://example.org//ns', SpiffeIdError.EMPTY_SEGMENT],
  ['spiffe://example.org/ns//a', SpiffeIdError.EMPTY_SEGMENT],
  ['spiffe://example.org/./a', SpiffeIdError.DOT_SEGMENT],
  ['spiffe://example.org/a/..', SpiffeIdError.DOT_SEGMENT],
  ['spiffe://example.org/a/../b', SpiffeIdError.DOT_SEGMENT],
  ['spiffe://example.org/a%20b', SpiffeIdError.BAD_PATH_SEGMENT_CHAR],
  ['spiffe://example.org/a b', SpiffeIdError.BAD_PATH_SEGMENT_CHAR],
  ['spiffe://example.org/a:b', SpiffeIdError.BAD_PATH_SEGMENT_CHAR],
  ['spiffe://example.org/ü', SpiffeIdError.BAD_PATH_SEGMENT_CHAR],
  ['spiffe://example.org/a?x=1', SpiffeIdError.HAS_QUERY],
  ['spiffe://example.org?x=1', SpiffeIdError.HAS_QUERY],
  ['spiffe://example.org/a#frag', SpiffeIdError.HAS_FRAGMENT],
  ['spiffe://example.org#frag', SpiffeIdError.HAS_FRAGMENT],
  [`spiffe://${'a'.repeat(256)}/x`, SpiffeIdError.TRUST_DOMAIN_TOO_LONG],
  [`spiffe://example.org/${'a'.repeat(2048)}`, SpiffeIdError.TOO_LONG],
];

test('SpiffeId.parse accepts valid IDs and exposes trust domain and path', () => {
  for (const [text, td, path] of VALID) {
    const id = SpiffeId.parse(text);
    assert.equal(id.trustDomain, td, text);
    assert.equal(id.domain.name, td, text);
    assert.equal(id.path, path, text);
    assert.equal(id.toString(), text);
    assert.equal(JSON.stringify(id), JSON.stringify(text));
  }
});

test('SpiffeId.parse accepts exactly 2048 characters and refuses 2049', () => {
  const prefix = 'spiffe://example.org/';
  const max = prefix + 'a'.repeat(2048 - prefix.length);
  assert.equal(SpiffeId.parse(max).toString().length, 2048);
  assert.equal(SpiffeId.tryParse(`${max}a`).ok, false);
});

test('SpiffeId.parse rejects each invalid class with its named reason', () => {
  for (const [text, reason] of INVALID) {
    const r = SpiffeId.tryParse(text);
    assert.equal(r.ok, false, `${text} should be invalid`);
    if (!r.ok) assert.equal(r.reason, reason, `${text}: got ${r.reason} (${r.message})`);
    assert.throws(
      () => SpiffeId.parse(text, 'principals[0]'),
      (err: unknown) =>
        isMeshError(err, ErrorCodes.SPIFFE_ID) &&
        err.details?.reason === reason &&
        err.message.startsWith('principals[0]: ') &&
        err.subject === 'principals[0]',
      text,
    );
    assert.equal(SpiffeId.isValid(text), false);
  }
});

test('the error message names the value and explains the reason', () => {
  assert.throws(
    () => SpiffeId.parse('spiffe://Cluster.local/ns/a/sa/b', 'spiffe'),
    /spiffe: "spiffe:\/\/Cluster\.local\/ns\/a\/sa\/b" is not a valid SPIFFE ID: trust domain characters are limited to lowercase .*uppercase "C"/,
  );
  assert.throws(() => SpiffeId.parse('SPIFFE://td/x'), /scheme is missing or invalid.*must be lowercase/);
});

test('fromParts, fromSegments and forWorkload check what they build', () => {
  assert.equal(SpiffeId.fromParts('example.org', '/a/b').toString(), 'spiffe://example.org/a/b');
  assert.equal(SpiffeId.fromParts(TrustDomain.parse('example.org'), '').toString(), 'spiffe://example.org');
  assert.equal(SpiffeId.fromSegments('td', 'x', 'y').toString(), 'spiffe://td/x/y');
  const wl = SpiffeId.forWorkload('cluster.local', 'default', 'bookinfo-productpage');
  assert.equal(wl.toString(), 'spiffe://cluster.local/ns/default/sa/bookinfo-productpage');
  assert.equal(wl.namespace, 'default');
  assert.equal(wl.serviceAccount, 'bookinfo-productpage');
  assert.equal(wl.istioPrincipal, 'cluster.local/ns/default/sa/bookinfo-productpage');
  assert.ok(wl.memberOf('cluster.local'));
  assert.ok(wl.equals('spiffe://cluster.local/ns/default/sa/bookinfo-productpage'));

  const reasonOf = (fn: () => unknown): unknown => {
    try {
      fn();
    } catch (err) {
      return isMeshError(err, ErrorCodes.SPIFFE_ID) ? err.details?.reason : err;
    }
    return 'no error';
  };
  assert.equal(reasonOf(() => SpiffeId.fromParts('example.org', 'a/b')), SpiffeIdError.NO_LEADING_SLASH);
  assert.equal(reasonOf(() => SpiffeId.fromParts('Example.org', '/a')), SpiffeIdError.BAD_TRUST_DOMAIN_CHAR);
  assert.equal(reasonOf(() => SpiffeId.forWorkload('cluster.local', 'a/b', 'sa')), SpiffeIdError.BAD_PATH_SEGMENT_CHAR);
  assert.equal(reasonOf(() => SpiffeId.forWorkload('cluster.local', '', 'sa')), SpiffeIdError.EMPTY_SEGMENT);
  assert.equal(reasonOf(() => SpiffeId.forWorkload('cluster.local', 'ns', '..')), SpiffeIdError.DOT_SEGMENT);
  assert.equal(reasonOf(() => SpiffeId.fromParts('td', `/${'a'.repeat(2048)}`)), SpiffeIdError.TOO_LONG);
});

test('namespace and serviceAccount only for Istio-shaped paths', () => {
  for (const text of ['spiffe://td', 'spiffe://td/ns/a', 'spiffe://td/ns/a/sa/b/c', 'spiffe://td/x/a/sa/b', 'spiffe://td/ns/a/xx/b']) {
    const id = SpiffeId.parse(text);
    assert.equal(id.namespace, null, text);
    assert.equal(id.serviceAccount, null, text);
  }
  assert.equal(SpiffeId.parse('spiffe://td').istioPrincipal, 'td');
  assert.deepEqual(SpiffeId.parse('spiffe://td/a/b').segments, ['a', 'b']);
});

test('TrustDomain.parse takes a name or a SPIFFE ID', () => {
  assert.equal(TrustDomain.parse('cluster.local').name, 'cluster.local');
  assert.equal(TrustDomain.parse('spiffe://cluster.local/ns/a/sa/b').name, 'cluster.local');
  assert.equal(TrustDomain.parse('cluster.local').id.toString(), 'spiffe://cluster.local');
  assert.ok(TrustDomain.parse('a.b').equals('a.b'));
  for (const [text, reason] of [
    ['', SpiffeIdError.MISSING_TRUST_DOMAIN],
    ['Cluster.local', SpiffeIdError.BAD_TRUST_DOMAIN_CHAR],
    ['td:443', SpiffeIdError.HAS_PORT],
    ['u@td', SpiffeIdError.HAS_USERINFO],
    ['spiffe://td/a/', SpiffeIdError.TRAILING_SLASH],
  ] as const) {
    assert.throws(
      () => TrustDomain.parse(text, '--trust-domain'),
      (err: unknown) => isMeshError(err, ErrorCodes.SPIFFE_ID) && err.details?.reason === reason && err.message.startsWith('--trust-domain: '),
      text,
    );
  }
});

// ------------------------------------------------------------------------------------------------------------
// X509-SVID

const root = await TestCA.root({ name: 'svid root' });
const ID = 'spiffe://cluster.local/ns/default/sa/web';

function codes(problems: Array<{ code: string }>): string[] {
  return problems.map((p) => p.code).sort();
}

test('a TestCA SVID is a valid X509-SVID', async () => {
  const { cert } = await root.issueSvid(ID);
  assert.deepEqual(checkX509Svid(cert), []);
  assert.deepEqual(checkX509Svid(cert, { trustDomain: 'cluster.local' }), []);
  assert.equal(assertX509Svid(cert).toString(), ID);
  assert.equal(spiffeIdOf(cert)?.toString(), ID);
});

test('checkX509Svid names each violation', async () => {
  const cases: Array<[string, Parameters<TestCA['issueSvid']>[1] & object, string[], string?]> = [
    ['no URI SAN', { sans: [{ type: 'dns', value: 'web.example.com' }] }, [SvidViolation.URI_SAN_COUNT]],
    ['two URI SANs', { sans: [{ type: 'uri', value: ID }, { type: 'uri', value: 'spiffe://cluster.local/ns/x/sa/y' }] }, [SvidViolation.URI_SAN_COUNT]],
    ['bad SPIFFE ID', { sans: [{ type: 'uri', value: 'spiffe://Cluster.local/ns/a/sa/b' }] }, [SvidViolation.BAD_SPIFFE_ID]],
    ['not spiffe scheme', { sans: [{ type: 'uri', value: 'https://cluster.local/ns/a' }] }, [SvidViolation.BAD_SPIFFE_ID]],
    ['root path', { sans: [{ type: 'uri', value: 'spiffe://cluster.local' }] }, [SvidViolation.EMPTY_PATH]],
    ['CA leaf', { basicConstraints: { ca: true } }, [SvidViolation.LEAF_IS_CA]],
    ['keyCertSign', { keyUsage: ['digitalSignature', 'keyCertSign'] }, [SvidViolation.LEAF_KEY_CERT_SIGN]],
    ['cRLSign', { keyUsage: ['digitalSignature', 'cRLSign'] }, [SvidViolation.LEAF_CRL_SIGN]],
    ['no digitalSignature', { keyUsage: ['keyEncipherment'] }, [SvidViolation.NO_DIGITAL_SIGNATURE]],
    ['no key usage', { keyUsage: [] }, [SvidViolation.NO_KEY_USAGE]],
    [
      'key usage not critical',
      // KeyUsage BIT STRING with digitalSignature only, as a non-critical extra extension.
      { keyUsage: [], extraExtensions: [{ oid: '2.5.29.15', critical: false, value: new Uint8Array([0x03, 0x02, 0x07, 0x80]) }] },
      [SvidViolation.KEY_USAGE_NOT_CRITICAL],
    ],
    ['client-only EKU', { extKeyUsage: ['clientAuth'] }, [SvidViolation.EXT_KEY_USAGE]],
    ['anyEKU alone', { extKeyUsage: ['any'] }, [SvidViolation.EXT_KEY_USAGE]],
    ['SAN not critical with empty subject', { sanCritical: false }, [SvidViolation.SAN_NOT_CRITICAL]],
    ['other trust domain', {}, [SvidViolation.TRUST_DOMAIN_MISMATCH], 'example.org'],
  ];
  for (const [name, spec, expected, td] of cases) {
    const { cert } = await root.issueSvid(ID, spec);
    assert.deepEqual(codes(checkX509Svid(cert, td ? { trustDomain: td } : {})), [...expected].sort(), name);
  }
  // No EKU at all is allowed (SHOULD, not MUST), and a subject lets the SAN be non-critical.
  const { cert: noEku } = await root.issue({ sans: [{ type: 'uri', value: ID }], subject: 'CN=web', keyUsage: ['digitalSignature'] });
  assert.deepEqual(checkX509Svid(noEku), []);
});

test('assertX509Svid throws MeshError SVID listing every violation', async () => {
  const { cert } = await root.issueSvid('spiffe://cluster.local', { basicConstraints: { ca: true }, keyUsage: ['keyCertSign', 'digitalSignature'] });
  assert.throws(
    () => assertX509Svid(cert, {}, 'peer 10.0.0.7'),
    (err: unknown) => {
      assert.ok(isMeshError(err, ErrorCodes.SVID));
      assert.match(err.message, /^peer 10\.0\.0\.7: not a valid X509-SVID: /);
      assert.match(err.message, /no path/);
      assert.match(err.message, /must not be a CA/);
      assert.match(err.message, /keyCertSign/);
      assert.deepEqual(
        [...(err.details?.violations as string[])].sort(),
        [SvidViolation.EMPTY_PATH, SvidViolation.LEAF_IS_CA, SvidViolation.LEAF_KEY_CERT_SIGN].sort(),
      );
      return true;
    },
  );
});

test('checkSigningCertificate: CA, keyCertSign, optional path-less SPIFFE ID', async () => {
  assert.deepEqual(checkSigningCertificate(root.cert), []);
  const withId = await root.child({ name: 'td ca', spec: { sans: [{ type: 'uri', value: 'spiffe://cluster.local' }] } });
  assert.deepEqual(checkSigningCertificate(withId.cert, { trustDomain: 'cluster.local' }), []);
  assert.deepEqual(codes(checkSigningCertificate(withId.cert, { trustDomain: 'example.org' })), [SvidViolation.TRUST_DOMAIN_MISMATCH]);
  const withPath = await root.child({ name: 'path ca', spec: { sans: [{ type: 'uri', value: 'spiffe://cluster.local/ca' }] } });
  assert.deepEqual(codes(checkSigningCertificate(withPath.cert)), [SvidViolation.SIGNING_ID_HAS_PATH]);
  const noKcs = await root.child({ name: 'no kcs', spec: { keyUsage: ['cRLSign'] } });
  assert.deepEqual(codes(checkSigningCertificate(noKcs.cert)), [SvidViolation.NO_KEY_CERT_SIGN]);
  const { cert: leaf } = await root.issueSvid(ID);
  assert.deepEqual(codes(checkSigningCertificate(leaf)), [SvidViolation.NOT_CA, SvidViolation.NO_KEY_CERT_SIGN, SvidViolation.SIGNING_ID_HAS_PATH].sort());
  assert.throws(() => assertSigningCertificate(leaf, {}, 'ca-cert.pem'), (err: unknown) => isMeshError(err, ErrorCodes.SVID) && /^ca-cert\.pem: /.test(err.message));
});
