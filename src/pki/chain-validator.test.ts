import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, Name, NameConstraints } from '@peculiar/asn1-x509';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { TestCA } from '../../test/helpers/test-ca.js';
import {
  Certificate,
  ChainReason,
  OID,
  assertChain,
  dnWithin,
  dnsWithin,
  emailWithin,
  ipWithin,
  matchesHostname,
  uriHost,
  uriWithin,
  validateChain,
  type CertificateSpec,
  type ChainResult,
  type ValidateChainOptions,
} from './index.js';

const DAY = 86_400_000;
const ID = 'spiffe://cluster.local/ns/default/sa/web';
const CA_KU: CertificateSpec['keyUsage'] = ['keyCertSign', 'cRLSign', 'digitalSignature'];

const root = await TestCA.root({ name: 'chain root' });
const int = await root.child({ name: 'chain int' });
const svid = await int.issueSvid(ID);

function codesOf(r: ChainResult): string[] {
  return r.ok ? [] : r.reasons.map((x) => `${x.code}@${x.depth}`).sort();
}

function check(options: Partial<ValidateChainOptions> & { leaf: Certificate }): ChainResult {
  return validateChain({ roots: [root.cert], ...options });
}

/** A CA certificate for `subject` with `key`'s public key, signed by `by`: cross-signatures and loops. */
async function crossCert(by: TestCA, of: TestCA, spec: Partial<CertificateSpec> = {}): Promise<Certificate> {
  const r = await by.issue({ subject: of.cert.subject, publicKey: of.signer.publicKey, basicConstraints: { ca: true }, keyUsage: CA_KU, ...spec });
  // The cross certificate must name its subject with the same bytes, or chaining by name would not find it.
  assert.ok(r.cert.subjectDer.equals(of.cert.subjectDer));
  return r.cert;
}

/** The same certificate with one byte of its signature flipped. */
function tamper(cert: Certificate): Certificate {
  const der = Buffer.from(cert.der);
  der[der.length - 1] ^= 0x01;
  return Certificate.fromDer(der);
}

test('a leaf, an intermediate and a root validate', () => {
  const r = check({ leaf: svid.cert, intermediates: [int.cert], purpose: 'server' });
  assert.equal(r.ok, true, JSON.stringify(codesOf(r)));
  assert.deepEqual(
    r.chain.map((c) => c.subject || c.sans.uri[0]),
    [ID, 'O=meshcert tests, CN=chain int', 'O=meshcert tests, CN=chain root'],
  );
  assert.deepEqual(assertChain({ leaf: svid.cert, intermediates: [int.cert], roots: [root.cert], purpose: 'client' }).length, 3);
});

test('path building: shuffled intermediates, unrelated extras, duplicates', async () => {
  const int2 = await int.child({ name: 'chain int 2' });
  const leaf = await int2.issueSvid(ID);
  const other = await TestCA.root({ name: 'unrelated root' });
  const otherInt = await other.child({ name: 'chain int' }); // same subject as `int`, other key
  const extras = [otherInt.cert, other.cert, (await other.issueSvid(ID)).cert];
  const orders = [
    [int.cert, int2.cert, ...extras],
    [...extras, int2.cert, int.cert],
    [extras[0]!, int.cert, extras[1]!, int2.cert, int2.cert, root.cert],
  ];
  for (const intermediates of orders) {
    const r = check({ leaf: leaf.cert, intermediates });
    assert.equal(r.ok, true, JSON.stringify(codesOf(r)));
    assert.equal(r.chain.length, 4);
    assert.ok(r.chain[2]!.der.equals(int.cert.der), 'the intermediate with the right key is chosen');
    assert.ok(r.chain[3]!.der.equals(root.cert.der));
  }
});

test('path building: two roots with the same subject during a rotation', async () => {
  const oldRoot = await TestCA.root({ name: 'mesh root' });
  const newRoot = await TestCA.root({ name: 'mesh root' });
  assert.ok(oldRoot.cert.subjectDer.equals(newRoot.cert.subjectDer));
  const oldLeaf = await (await oldRoot.child()).issueSvid(ID);
  const newLeaf = await newRoot.issueSvid(ID);
  for (const roots of [
    [oldRoot.cert, newRoot.cert],
    [newRoot.cert, oldRoot.cert],
  ]) {
    const a = validateChain({ leaf: oldLeaf.cert, intermediates: oldLeaf.chain.slice(1), roots });
    assert.equal(a.ok, true);
    assert.ok(a.chain.at(-1)!.der.equals(oldRoot.cert.der));
    const b = validateChain({ leaf: newLeaf.cert, roots });
    assert.equal(b.ok, true);
    assert.ok(b.chain.at(-1)!.der.equals(newRoot.cert.der));
  }
});

test('path building: a cross-signed alternative when the direct root fails', async () => {
  const oldRoot = await TestCA.root({ name: 'old root' });
  const expiredNew = await TestCA.root({ name: 'new root', notBefore: new Date(Date.now() - 20 * DAY), notAfter: new Date(Date.now() - DAY) });
  const mid = await expiredNew.child({ name: 'new int' });
  const leaf = await mid.issueSvid(ID);
  const cross = await crossCert(oldRoot, expiredNew);

  // Only the old root is trusted: leaf → new int → cross (new root's key, signed by old root) → old root.
  const viaCross = validateChain({ leaf: leaf.cert, intermediates: [cross, mid.cert], roots: [oldRoot.cert] });
  assert.equal(viaCross.ok, true, JSON.stringify(codesOf(viaCross)));
  assert.equal(viaCross.chain.length, 4);
  assert.ok(viaCross.chain[2]!.der.equals(cross.der));

  // Both trusted: the direct path to the expired new root is tried first, fails, and the cross path wins.
  const both = validateChain({ leaf: leaf.cert, intermediates: [mid.cert, cross], roots: [expiredNew.cert, oldRoot.cert] });
  assert.equal(both.ok, true, JSON.stringify(codesOf(both)));
  assert.ok(both.chain.at(-1)!.der.equals(oldRoot.cert.der));

  // Without the cross certificate, the expired root is the best path, reported as such.
  const none = validateChain({ leaf: leaf.cert, intermediates: [mid.cert], roots: [expiredNew.cert, oldRoot.cert] });
  assert.deepEqual(codesOf(none), ['expired@2']);
});

test('path building: cross-signed loops end', async () => {
  const a = await TestCA.root({ name: 'loop A' });
  const b = await TestCA.root({ name: 'loop B' });
  const aByB = await crossCert(b, a);
  const bByA = await crossCert(a, b);
  const leaf = await a.issueSvid(ID);
  const other = await TestCA.root({ name: 'elsewhere' });
  const r = validateChain({ leaf: leaf.cert, intermediates: [aByB, bByA, a.cert, b.cert], roots: [other.cert] });
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.reasons.some((x) => x.code === ChainReason.UNTRUSTED_ROOT || x.code === ChainReason.NO_ISSUER));
  // The same pile with B trusted finds leaf → A' (A signed by B) → B.
  const ok = validateChain({ leaf: leaf.cert, intermediates: [bByA, aByB], roots: [b.cert] });
  assert.equal(ok.ok, true, JSON.stringify(codesOf(ok)));
  assert.equal(ok.chain.length, 3);
});

test('signature: a tampered leaf or an impostor issuer with the same name', async () => {
  assert.deepEqual(codesOf(check({ leaf: tamper(svid.cert), intermediates: [int.cert] })), ['signature@0']);
  const impostor = await root.child({ name: 'chain int' });
  const leaf = await impostor.issueSvid(ID);
  assert.deepEqual(codesOf(check({ leaf: leaf.cert, intermediates: [int.cert] })), ['signature@0']);
});

test('signature checks are cached per (child, issuer) pair', async () => {
  const leaf = Certificate.fromDer(svid.cert.der);
  let calls = 0;
  const real = leaf.verifySignature.bind(leaf);
  leaf.verifySignature = (key) => {
    calls++;
    return real(key);
  };
  const fake = await root.child({ name: 'chain int' });
  const r = check({ leaf, intermediates: [fake.cert, int.cert, fake.cert] });
  assert.equal(r.ok, true);
  assert.equal(calls, 2, 'one check per distinct candidate issuer');
});

test('expired and notYetValid at every depth, judged at `at`', async () => {
  const expired = await int.issueSvid(ID, { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
  assert.deepEqual(codesOf(check({ leaf: expired.cert, intermediates: [int.cert] })), ['expired@0']);
  const future = await int.issueSvid(ID, { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 2 * DAY) });
  assert.deepEqual(codesOf(check({ leaf: future.cert, intermediates: [int.cert] })), ['notYetValid@0']);
  assert.equal(check({ leaf: future.cert, intermediates: [int.cert], at: new Date(Date.now() + 1.5 * DAY) }).ok, true);
  // Two years on, the root, the intermediate and the leaf have all expired.
  assert.deepEqual(codesOf(check({ leaf: svid.cert, intermediates: [int.cert], at: new Date(Date.now() + 730 * DAY) })), [
    'expired@0',
    'expired@1',
    'expired@2',
  ]);
  const r = check({ leaf: expired.cert, intermediates: [int.cert] });
  assert.ok(!r.ok && /leaf "spiffe:\/\/cluster\.local\/ns\/default\/sa\/web" expired at /.test(r.reasons[0]!.message));
});

test('notCA and keyUsage on issuers', async () => {
  const notCa = await root.child({ name: 'not a ca', spec: { basicConstraints: { ca: false }, keyUsage: ['digitalSignature'] } });
  const leaf1 = await notCa.issueSvid(ID);
  assert.deepEqual(codesOf(check({ leaf: leaf1.cert, intermediates: [notCa.cert] })), ['keyUsage@1', 'notCA@1']);
  const noBc = await root.child({ name: 'no basic constraints', spec: { basicConstraints: undefined } });
  assert.equal(noBc.cert.basicConstraints, null);
  assert.deepEqual(codesOf(check({ leaf: (await noBc.issueSvid(ID)).cert, intermediates: [noBc.cert] })), ['notCA@1']);
  const noKcs = await root.child({ name: 'no keyCertSign', spec: { keyUsage: ['cRLSign', 'digitalSignature'] } });
  assert.deepEqual(codesOf(check({ leaf: (await noKcs.issueSvid(ID)).cert, intermediates: [noKcs.cert] })), ['keyUsage@1']);
  // An issuer without any key usage extension is fine (RFC 5280 path validation does not require one).
  const noKu = await root.child({ name: 'no key usage', spec: { keyUsage: [] } });
  assert.equal(noKu.cert.keyUsage, null);
  assert.equal(check({ leaf: (await noKu.issueSvid(ID)).cert, intermediates: [noKu.cert] }).ok, true);
});

test('keyUsage on the leaf for the TLS purpose', async () => {
  const signOnly = await int.issueSvid(ID, { keyUsage: ['cRLSign'] });
  assert.deepEqual(codesOf(check({ leaf: signOnly.cert, intermediates: [int.cert], purpose: 'server' })), ['keyUsage@0']);
  assert.equal(check({ leaf: signOnly.cert, intermediates: [int.cert], purpose: 'any' }).ok, true);
  // keyEncipherment alone serves an RSA TLS server but not a client (OpenSSL's rule).
  const kex = await int.issueSvid(ID, { keyUsage: ['keyEncipherment'] });
  assert.equal(check({ leaf: kex.cert, intermediates: [int.cert], purpose: 'server' }).ok, true);
  assert.deepEqual(codesOf(check({ leaf: kex.cert, intermediates: [int.cert], purpose: 'client' })), ['keyUsage@0']);
});

test('pathLength counts non-self-issued intermediates below the CA', async () => {
  const p0 = await root.child({ name: 'pathlen 0', pathLen: 0 });
  const below = await p0.child({ name: 'below pathlen 0' });
  const leaf = await below.issueSvid(ID);
  assert.deepEqual(codesOf(check({ leaf: leaf.cert, intermediates: [below.cert, p0.cert] })), ['pathLength@2']);
  assert.equal(check({ leaf: (await p0.issueSvid(ID)).cert, intermediates: [p0.cert] }).ok, true);
  const rootP1 = await TestCA.root({ name: 'root pathlen 1', pathLen: 1 });
  const i1 = await rootP1.child({ name: 'i1' });
  const i2 = await i1.child({ name: 'i2' });
  const deep = await i2.issueSvid(ID);
  assert.deepEqual(codesOf(validateChain({ leaf: deep.cert, intermediates: [i1.cert, i2.cert], roots: [rootP1.cert] })), ['pathLength@3']);
  assert.equal(validateChain({ leaf: (await i1.issueSvid(ID)).cert, intermediates: [i1.cert], roots: [rootP1.cert] }).ok, true);
});

test('extKeyUsage on the leaf and on intermediates that carry one', async () => {
  const clientOnly = await int.issueSvid(ID, { extKeyUsage: ['clientAuth'] });
  assert.deepEqual(codesOf(check({ leaf: clientOnly.cert, intermediates: [int.cert], purpose: 'server' })), ['extKeyUsage@0']);
  assert.equal(check({ leaf: clientOnly.cert, intermediates: [int.cert], purpose: 'client' }).ok, true);
  assert.equal(check({ leaf: clientOnly.cert, intermediates: [int.cert], purpose: 'any' }).ok, true);
  const noEku = await int.issue({ sans: [{ type: 'uri', value: ID }] });
  assert.equal(check({ leaf: noEku.cert, intermediates: [int.cert], purpose: 'server' }).ok, true);

  const clientCa = await root.child({ name: 'client-only ca', spec: { extKeyUsage: ['clientAuth'] } });
  const leaf = await clientCa.issueSvid(ID);
  assert.deepEqual(codesOf(check({ leaf: leaf.cert, intermediates: [clientCa.cert], purpose: 'server' })), ['extKeyUsage@1']);
  assert.equal(check({ leaf: leaf.cert, intermediates: [clientCa.cert], purpose: 'client' }).ok, true);

  // anyExtendedKeyUsage alone: refused by default (as OpenSSL/BoringSSL refuse it), accepted on request.
  const any = await int.issueSvid(ID, { extKeyUsage: ['any'] });
  assert.deepEqual(codesOf(check({ leaf: any.cert, intermediates: [int.cert], purpose: 'server' })), ['extKeyUsage@0']);
  assert.equal(check({ leaf: any.cert, intermediates: [int.cert], purpose: 'server', acceptAnyExtendedKeyUsage: true }).ok, true);
});

test('nameConstraints: DNS, IP, URI (spiffe host), email, excluded', async () => {
  const dnsCa = await root.child({ name: 'dns nc', spec: { nameConstraints: { permitted: { dns: ['example.com'] }, excluded: { dns: ['bad.example.com'] } } } });
  const v = (leaf: Certificate, ca: TestCA): string[] => codesOf(check({ leaf, intermediates: [ca.cert] }));
  assert.deepEqual(v((await dnsCa.issueServer(['example.com', 'a.b.example.com'])).cert, dnsCa), []);
  assert.deepEqual(v((await dnsCa.issueServer(['evil.org'])).cert, dnsCa), ['nameConstraints@0']);
  assert.deepEqual(v((await dnsCa.issueServer(['notexample.com'])).cert, dnsCa), ['nameConstraints@0']);
  assert.deepEqual(v((await dnsCa.issueServer(['x.bad.example.com'])).cert, dnsCa), ['nameConstraints@0']);
  // A CN that looks like a host name counts as a DNS name when the leaf has no DNS SAN (as OpenSSL does).
  assert.deepEqual(v((await dnsCa.issue({ subject: 'CN=host.evil.org' })).cert, dnsCa), ['nameConstraints@0']);
  assert.deepEqual(v((await dnsCa.issue({ subject: 'CN=just a label' })).cert, dnsCa), []);

  const ipCa = await root.child({ name: 'ip nc', spec: { nameConstraints: { permitted: { ip: ['10.0.0.0/8', 'fd00::/8'] } } } });
  assert.deepEqual(v((await ipCa.issue({ sans: [{ type: 'ip', value: '10.1.2.3' }, { type: 'ip', value: 'fd12::1' }] })).cert, ipCa), []);
  assert.deepEqual(v((await ipCa.issue({ sans: [{ type: 'ip', value: '192.168.1.1' }] })).cert, ipCa), ['nameConstraints@0']);
  assert.deepEqual(v((await ipCa.issue({ sans: [{ type: 'ip', value: '2001:db8::1' }] })).cert, ipCa), ['nameConstraints@0']);

  const uriCa = await root.child({ name: 'uri nc', spec: { nameConstraints: { permitted: { uri: ['cluster.local', '.mesh.example'] } } } });
  assert.deepEqual(v((await uriCa.issueSvid(ID)).cert, uriCa), []);
  assert.deepEqual(v((await uriCa.issueSvid('spiffe://east.mesh.example/ns/a/sa/b')).cert, uriCa), []);
  assert.deepEqual(v((await uriCa.issueSvid('spiffe://evil.local/ns/a/sa/b')).cert, uriCa), ['nameConstraints@0']);
  // A leading "." means subdomains only; without it, only that host (no subdomains, unlike DNS).
  assert.deepEqual(v((await uriCa.issueSvid('spiffe://mesh.example/ns/a/sa/b')).cert, uriCa), ['nameConstraints@0']);
  assert.deepEqual(v((await uriCa.issueSvid('spiffe://sub.cluster.local/ns/a/sa/b')).cert, uriCa), ['nameConstraints@0']);

  const mailCa = await root.child({ name: 'mail nc', spec: { nameConstraints: { permitted: { email: ['example.com'] }, excluded: { email: ['boss@example.com'] } } } });
  assert.deepEqual(v((await mailCa.issue({ sans: [{ type: 'email', value: 'dev@example.com' }] })).cert, mailCa), []);
  assert.deepEqual(v((await mailCa.issue({ sans: [{ type: 'email', value: 'boss@example.com' }] })).cert, mailCa), ['nameConstraints@0']);
  assert.deepEqual(v((await mailCa.issue({ sans: [{ type: 'email', value: 'dev@mail.example.com' }] })).cert, mailCa), ['nameConstraints@0']);

  // Constraints of a CA bind every certificate below it, not only the one it issued.
  const sub = await uriCa.child({ name: 'sub of uri nc' });
  const deep = await sub.issueSvid('spiffe://evil.local/ns/a/sa/b');
  assert.deepEqual(codesOf(check({ leaf: deep.cert, intermediates: [sub.cert, uriCa.cert] })), ['nameConstraints@0']);
});

test('nameConstraints of a root apply too, and messages name both certificates', async () => {
  const ncRoot = await TestCA.root({ name: 'constrained root' });
  // TestCA.root has no spec hook: make the constrained root as a cross certificate of itself (self-issued).
  const selfSigned = await ncRoot.issue({
    subject: ncRoot.cert.subject,
    publicKey: ncRoot.signer.publicKey,
    basicConstraints: { ca: true },
    keyUsage: CA_KU,
    nameConstraints: { permitted: { dns: ['example.com'] } },
  });
  const leaf = await ncRoot.issueServer(['evil.org']);
  const r = validateChain({ leaf: leaf.cert, roots: [selfSigned.cert] });
  assert.deepEqual(codesOf(r), ['nameConstraints@0']);
  assert.ok(!r.ok && /DNS:evil\.org is outside the permitted subtrees \(DNS:example\.com\), by the name constraints of root "O=meshcert tests, CN=constrained root"/.test(r.reasons[0]!.message));
});

test('unknownCriticalExtension unless the caller knows it', async () => {
  const odd = { oid: '1.3.6.1.4.1.99999.1', critical: true, value: new Uint8Array([0x05, 0x00]) };
  const leaf = await int.issueSvid(ID, { extraExtensions: [odd] });
  assert.deepEqual(codesOf(check({ leaf: leaf.cert, intermediates: [int.cert] })), ['unknownCriticalExtension@0']);
  assert.equal(check({ leaf: leaf.cert, intermediates: [int.cert], knownCriticalExtensions: [odd.oid] }).ok, true);
  const oddCa = await root.child({ name: 'odd ca', spec: { extraExtensions: [odd] } });
  assert.deepEqual(codesOf(check({ leaf: (await oddCa.issueSvid(ID)).cert, intermediates: [oddCa.cert] })), ['unknownCriticalExtension@1']);
  // Critical extensions we understand do not count: SAN (critical in SVIDs), key usage, name constraints.
  assert.ok(svid.cert.sanCritical);
});

test('untrustedRoot and noIssuer', async () => {
  const stranger = await TestCA.root({ name: 'stranger root' });
  const sInt = await stranger.child({ name: 'stranger int' });
  const leaf = await sInt.issueSvid(ID);
  const r1 = check({ leaf: leaf.cert, intermediates: [sInt.cert, stranger.cert] });
  assert.deepEqual(codesOf(r1), ['untrustedRoot@2']);
  assert.equal(r1.chain.length, 3);
  assert.deepEqual(codesOf(check({ leaf: leaf.cert, intermediates: [sInt.cert] })), ['noIssuer@1']);
  assert.deepEqual(codesOf(check({ leaf: svid.cert })), ['noIssuer@0']);
  const r2 = check({ leaf: svid.cert });
  assert.ok(!r2.ok && r2.reasons[0]!.message.includes('O=meshcert tests, CN=chain int'));
  // A self-signed leaf not in the bundle, and an empty bundle.
  assert.deepEqual(codesOf(check({ leaf: stranger.cert })), ['untrustedRoot@0']);
  assert.deepEqual(codesOf(validateChain({ leaf: svid.cert, intermediates: [int.cert], roots: [] })), ['untrustedRoot@0']);
  // Problems found on the partial path are reported too.
  const expired = await sInt.issueSvid(ID, { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
  assert.deepEqual(codesOf(check({ leaf: expired.cert, intermediates: [sInt.cert] })), ['expired@0', 'noIssuer@1']);
});

test('a leaf that is itself in the roots is trusted as given', async () => {
  const selfSigned = await TestCA.root({ name: 'pinned' });
  const r = validateChain({ leaf: selfSigned.cert, roots: [root.cert, selfSigned.cert] });
  assert.equal(r.ok, true);
  assert.equal(r.chain.length, 1);
  // The CA certificate of a mesh CA validated against its own bundle (what `ca init` does for a self-signed root).
  assert.equal(validateChain({ leaf: root.cert, roots: [root.cert] }).ok, true);
  // An intermediate in the bundle anchors the path there.
  const r2 = validateChain({ leaf: svid.cert, roots: [int.cert] });
  assert.equal(r2.ok, true);
  assert.equal(r2.chain.length, 2);
  // Still checked: validity.
  assert.deepEqual(codesOf(validateChain({ leaf: selfSigned.cert, roots: [selfSigned.cert], at: new Date(Date.now() + 400 * DAY) })), ['expired@0']);
});

test('hostname: DNS with wildcards, IP by bytes, no CN fallback', async () => {
  const leaf = await int.issueServer(['api.example.com', '*.apps.example.com'], {
    sans: [
      { type: 'dns', value: 'api.example.com' },
      { type: 'dns', value: '*.apps.example.com' },
      { type: 'ip', value: '10.1.2.3' },
      { type: 'ip', value: 'fd00::1' },
    ],
  });
  for (const host of ['api.example.com', 'API.Example.com.', 'x.apps.example.com', '10.1.2.3', 'fd00:0:0::1', '[fd00::1]']) {
    assert.ok(matchesHostname(leaf.cert, host), host);
  }
  for (const host of ['example.com', 'apps.example.com', 'a.b.apps.example.com', '10.1.2.4', 'fd00::2', '']) {
    assert.ok(!matchesHostname(leaf.cert, host), host);
  }
  assert.equal(check({ leaf: leaf.cert, intermediates: [int.cert], hostname: 'x.apps.example.com', purpose: 'server' }).ok, true);
  assert.deepEqual(codesOf(check({ leaf: leaf.cert, intermediates: [int.cert], hostname: 'other.example.com' })), ['hostname@0']);
  const cnOnly = await int.issue({ subject: 'CN=cn.example.com' });
  assert.deepEqual(codesOf(check({ leaf: cnOnly.cert, intermediates: [int.cert], hostname: 'cn.example.com' })), ['hostname@0']);
  const star = await int.issueServer(['*.com']);
  assert.ok(!matchesHostname(star.cert, 'example.com'));
});

test('depth: maxDepth limits the intermediates', async () => {
  const int2 = await int.child({ name: 'depth int 2' });
  const leaf = await int2.issueSvid(ID);
  assert.equal(check({ leaf: leaf.cert, intermediates: [int.cert, int2.cert], maxDepth: 2 }).ok, true);
  assert.deepEqual(codesOf(check({ leaf: leaf.cert, intermediates: [int.cert, int2.cert], maxDepth: 1 })), ['depth@1']);
  assert.deepEqual(codesOf(check({ leaf: svid.cert, intermediates: [int.cert], maxDepth: 0 })), ['depth@0']);
});

test('assertChain throws MeshError CHAIN naming the source and every problem; options are checked', async () => {
  const expired = await int.issueSvid(ID, { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY), extKeyUsage: ['clientAuth'] });
  assert.throws(
    () => assertChain({ leaf: expired.cert, intermediates: [int.cert], roots: [root.cert], purpose: 'server' }, 'peer 10.0.0.9:443'),
    (err: unknown) => {
      assert.ok(isMeshError(err, ErrorCodes.CHAIN));
      assert.match(err.message, /^peer 10\.0\.0\.9:443: certificate chain is not valid: /);
      assert.match(err.message, /\[expired at depth 0\]/);
      assert.match(err.message, /\[extKeyUsage at depth 0\]/);
      assert.equal((err.details?.reasons as unknown[]).length, 2);
      return true;
    },
  );
  const bad = (o: unknown): void => {
    validateChain(o as ValidateChainOptions);
  };
  assert.throws(() => bad({ leaf: svid.cert, roots: [root.cert], purpose: 'serverAuth' }), (e: unknown) => isMeshError(e, ErrorCodes.INVALID_ARGUMENT) && /purpose/.test(e.message));
  assert.throws(() => bad({ leaf: svid.chainPem, roots: [root.cert] }), (e: unknown) => isMeshError(e, ErrorCodes.INVALID_ARGUMENT) && /leaf/.test(e.message));
  assert.throws(() => bad({ leaf: svid.cert, roots: root.cert }), (e: unknown) => isMeshError(e, ErrorCodes.INVALID_ARGUMENT) && /roots/.test(e.message));
  assert.throws(() => bad({ leaf: svid.cert, roots: [root.cert], maxDepth: -1 }), (e: unknown) => isMeshError(e, ErrorCodes.INVALID_ARGUMENT));
});

// ------------------------------------------------------------------------------------------------------------
// Name matching rules one by one (RFC 5280 §4.2.1.10 with OpenSSL's readings).

test('dnsWithin, uriWithin, emailWithin, ipWithin, uriHost', () => {
  assert.ok(dnsWithin('example.com', 'example.com'));
  assert.ok(dnsWithin('a.Example.com', 'example.COM'));
  assert.ok(!dnsWithin('aexample.com', 'example.com'));
  assert.ok(dnsWithin('a.example.com', '.example.com'));
  assert.ok(!dnsWithin('example.com', '.example.com'));
  assert.ok(dnsWithin('anything.org', ''));

  assert.equal(uriHost('spiffe://cluster.local/ns/a/sa/b'), 'cluster.local');
  assert.equal(uriHost('https://user@Host.Example:8443/x?y'), 'host.example');
  assert.equal(uriHost('https://[fd00::1]:443/'), 'fd00::1');
  assert.equal(uriHost('urn:uuid:1234'), null);
  assert.ok(uriWithin('spiffe://cluster.local/ns/a', 'cluster.local'));
  assert.ok(!uriWithin('spiffe://a.cluster.local/ns/a', 'cluster.local'));
  assert.ok(uriWithin('spiffe://a.cluster.local/ns/a', '.cluster.local'));
  assert.ok(!uriWithin('urn:x:y', 'cluster.local'));

  assert.ok(emailWithin('a@example.com', 'example.com'));
  assert.ok(emailWithin('a@EXAMPLE.com', 'a@example.com'));
  assert.ok(!emailWithin('A@example.com', 'a@example.com'));
  assert.ok(emailWithin('a@mail.example.com', '.example.com'));
  assert.ok(!emailWithin('a@example.com', '.example.com'));

  assert.ok(ipWithin(Buffer.from([10, 9, 8, 7]), Buffer.from([10, 0, 0, 0, 255, 0, 0, 0])));
  assert.ok(!ipWithin(Buffer.from([11, 9, 8, 7]), Buffer.from([10, 0, 0, 0, 255, 0, 0, 0])));
  assert.ok(!ipWithin(Buffer.alloc(16), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])));
});

test('dnWithin compares RDNs as a prefix, ignoring case and spacing', async () => {
  const leaf = await int.issue({ subject: 'O=Mesh Corp, OU=payments, CN=web' });
  const ca = await int.issue({ subject: 'O=mesh  corp' });
  const other = await int.issue({ subject: 'O=Other Corp' });
  assert.ok(dnWithin(leaf.cert.subjectDer, ca.cert.subjectDer));
  assert.ok(!dnWithin(leaf.cert.subjectDer, other.cert.subjectDer));
  assert.ok(!dnWithin(ca.cert.subjectDer, leaf.cert.subjectDer));

  // A directoryName constraint in a real extension (the builder has no dirName option, so encode it here).
  const nc = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees([new GeneralSubtree({ base: new GeneralName({ directoryName: AsnConvert.parse(ca.cert.subjectDer, Name) }) })]),
  });
  const dnCa = await root.child({ name: 'dn nc', spec: { extraExtensions: [{ oid: OID.nameConstraints, critical: true, value: new Uint8Array(AsnConvert.serialize(nc)) }] } });
  const inside = await dnCa.issue({ subject: 'O=MESH CORP, CN=inside' });
  const outside = await dnCa.issue({ subject: 'O=Other Corp, CN=outside' });
  assert.equal(check({ leaf: inside.cert, intermediates: [dnCa.cert] }).ok, true);
  assert.deepEqual(codesOf(check({ leaf: outside.cert, intermediates: [dnCa.cert] })), ['nameConstraints@0']);
});
