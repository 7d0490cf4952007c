/**
 * Our chain verdicts against two independent implementations, on the same files:
 *   openssl verify -x509_strict -purpose sslserver|sslclient -CAfile roots -untrusted ints leaf
 *   certtool --verify --load-ca-certificate roots --infile leaf+ints --verify-purpose OID   (GnuTLS)
 * Both must agree with us on ok / not ok, and OpenSSL's first error (text and depth) must be one of our reasons.
 * Where the two tools disagree with each other, the test pins down who says what, so a change is noticed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { certtool, openssl, run } from '../helpers/tools.js';
import {
  Certificate,
  ChainReason,
  checkX509Svid,
  validateChain,
  type ChainReasonCode,
  type ChainResult,
  type CertificateSpec,
} from '../../src/pki/index.js';
import { skipUnlessCi } from '../helpers/peers.js';

function available(cmd: string, args: string[]): boolean {
  try {
    return run(cmd, args).status === 0;
  } catch {
    return false;
  }
}
const skip = skipUnlessCi(!available('openssl', ['version']) || !available('certtool', ['--version']) ? 'needs openssl and certtool (gnutls-bin)' : false);

const DAY = 86_400_000;
const ID = 'spiffe://cluster.local/ns/default/sa/web';
const PURPOSE_OID = { server: '1.3.6.1.5.5.7.3.1', client: '1.3.6.1.5.5.7.3.2' } as const;

/** What OpenSSL 3.0 prints for each of our reasons (X509_verify_cert_error_string). */
const OPENSSL_TEXT: Record<ChainReasonCode, RegExp> = {
  signature: /certificate signature failure/,
  expired: /certificate has expired/,
  notYetValid: /certificate is not yet valid/,
  notCA: /invalid CA certificate/,
  // An issuer without keyCertSign is an "invalid CA" to OpenSSL; a leaf unfit for TLS is an unsuitable purpose.
  keyUsage: /key usage does not include certificate signing|invalid CA certificate|unsuitable certificate purpose/,
  extKeyUsage: /unsuitable certificate purpose/,
  pathLength: /path length constraint exceeded/,
  nameConstraints: /(permitted|excluded) subtree violation/,
  untrustedRoot: /self-signed certificate/,
  noIssuer: /unable to get (local )?issuer certificate/,
  unknownCriticalExtension: /unhandled critical extension/,
  hostname: /hostname mismatch/,
  depth: /certificate chain too long/,
};

/** What certtool prints ("Chain verification output: …") for each of our reasons. */
const GNUTLS_TEXT: Record<ChainReasonCode, RegExp> = {
  signature: /signature in the certificate is invalid/,
  expired: /uses expired certificate/,
  notYetValid: /uses not yet valid certificate/,
  notCA: /issuer is not a CA/,
  keyUsage: /violates the signer's constraints|intended purpose/,
  extKeyUsage: /does not match the intended purpose/,
  pathLength: /violates the signer's constraints/,
  nameConstraints: /violates the signer's constraints/,
  // GnuTLS does not single out a self-signed certificate outside the trust list: its issuer is "unknown".
  untrustedRoot: /issuer is unknown/,
  noIssuer: /issuer is unknown/,
  unknownCriticalExtension: /unknown critical extension/,
  hostname: /name in the certificate does not match/,
  depth: /NOT trusted/,
};

const tmp = tempDir('meshcert-interop-');
after(() => tmp.cleanup());
let fileNo = 0;

interface Case {
  leaf: Certificate;
  intermediates: Certificate[];
  roots: Certificate[];
  purpose: 'server' | 'client';
  hostname?: string;
}

interface ToolVerdict {
  ok: boolean;
  /** OpenSSL: every "error N at D depth lookup: TEXT"; GnuTLS: the chain verification output line. */
  errors: Array<{ depth: number; text: string }>;
  raw: string;
}

function files(c: Case): { roots: string; untrusted: string | null; leaf: string; chain: string } {
  const n = ++fileNo;
  return {
    roots: tmp.file(`${n}-roots.pem`, c.roots.map((r) => r.pem).join('')),
    untrusted: c.intermediates.length ? tmp.file(`${n}-untrusted.pem`, c.intermediates.map((r) => r.pem).join('')) : null,
    leaf: tmp.file(`${n}-leaf.pem`, c.leaf.pem),
    chain: tmp.file(`${n}-chain.pem`, [c.leaf, ...c.intermediates].map((r) => r.pem).join('')),
  };
}

function opensslVerify(c: Case, strict = true): ToolVerdict {
  const f = files(c);
  const args = ['verify', ...(strict ? ['-x509_strict'] : []), '-purpose', c.purpose === 'server' ? 'sslserver' : 'sslclient', '-CAfile', f.roots];
  if (f.untrusted) args.push('-untrusted', f.untrusted);
  // OpenSSL takes IP addresses through their own option; certtool's --verify-hostname takes both.
  if (c.hostname) args.push(isIP(c.hostname) ? '-verify_ip' : '-verify_hostname', c.hostname);
  args.push(f.leaf);
  const r = openssl(args);
  const raw = r.stdout + r.stderr;
  const errors = [...raw.matchAll(/error (\d+) at (\d+) depth lookup: (.*)/g)].map((m) => ({ depth: Number(m[2]), text: m[3]! }));
  return { ok: r.status === 0 && /: OK/.test(raw), errors, raw };
}

function gnutlsVerify(c: Case): ToolVerdict {
  const f = files(c);
  const args = ['--verify', '--load-ca-certificate', f.roots, '--infile', f.chain, '--verify-purpose', PURPOSE_OID[c.purpose]];
  if (c.hostname) args.push('--verify-hostname', c.hostname);
  const r = certtool(args);
  const raw = r.stdout + r.stderr;
  const line = /Chain verification output: (.*)/.exec(raw)?.[1] ?? '';
  return { ok: r.status === 0 && /Verified\. The certificate is trusted/.test(line), errors: line ? [{ depth: -1, text: line }] : [], raw };
}

function summary(r: ChainResult): string {
  return r.ok ? 'ok' : r.reasons.map((x) => `${x.code}@${x.depth}`).join(', ');
}

/** Runs the three verifiers and checks that they agree, verdict and category. Returns ours. */
function compare(name: string, c: Case, expected: ChainReasonCode[]): ChainResult {
  const ours = validateChain({ leaf: c.leaf, intermediates: c.intermediates, roots: c.roots, purpose: c.purpose, hostname: c.hostname });
  const o = opensslVerify(c);
  const g = gnutlsVerify(c);
  const ctx = `${name}: ours [${summary(ours)}]\n  openssl: ${o.raw.trim()}\n  gnutls: ${g.errors[0]?.text ?? g.raw.trim()}`;
  assert.deepEqual(ours.ok ? [] : [...new Set(ours.reasons.map((r) => r.code))].sort(), [...expected].sort(), ctx);
  assert.equal(o.ok, ours.ok, `OpenSSL disagrees on ${ctx}`);
  assert.equal(g.ok, ours.ok, `GnuTLS disagrees on ${ctx}`);
  if (!ours.ok) {
    const first = o.errors[0];
    assert.ok(first, `OpenSSL printed no error for ${ctx}`);
    assert.ok(
      ours.reasons.some((r) => r.depth === first.depth && OPENSSL_TEXT[r.code].test(first.text)),
      `OpenSSL's first error (depth ${first.depth}: ${first.text}) is none of our reasons in ${ctx}`,
    );
    assert.ok(
      ours.reasons.some((r) => GNUTLS_TEXT[r.code].test(g.errors[0]?.text ?? '')),
      `GnuTLS's output is none of our reason categories in ${ctx}`,
    );
  }
  return ours;
}

const root = await TestCA.root({ name: 'interop root' });
const int = await root.child({ name: 'interop int' });
const pastValidity: Partial<CertificateSpec> = { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) };

function svidCase(leaf: IssuedLeaf, purpose: 'server' | 'client' = 'server', extra: Partial<Case> = {}): Case {
  return { leaf: leaf.cert, intermediates: leaf.chain.slice(1), roots: [root.cert], purpose, ...extra };
}

test('good SVID chain via an intermediate, as server and client', { skip }, async () => {
  const leaf = await int.issueSvid(ID);
  compare('good server', svidCase(leaf, 'server'), []);
  compare('good client', svidCase(leaf, 'client'), []);
  // Two intermediates, and a server certificate checked against its host name.
  const int2 = await int.child({ name: 'interop int 2' });
  compare('two intermediates', svidCase(await int2.issueSvid(ID)), []);
  compare('hostname ok', svidCase(await int.issueServer(['api.example.com']), 'server', { hostname: 'api.example.com' }), []);
});

test('expired and not-yet-valid leaves', { skip }, async () => {
  compare('expired leaf', svidCase(await int.issueSvid(ID, pastValidity), 'client'), [ChainReason.EXPIRED]);
  const future = { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 2 * DAY) };
  compare('not yet valid leaf', svidCase(await int.issueSvid(ID, future)), [ChainReason.NOT_YET_VALID]);
});

test('wrong EKU on the leaf and on the intermediate', { skip }, async () => {
  compare('client-only leaf as server', svidCase(await int.issueSvid(ID, { extKeyUsage: ['clientAuth'] }), 'server'), [ChainReason.EXT_KEY_USAGE]);
  compare('server-only leaf as client', svidCase(await int.issueSvid(ID, { extKeyUsage: ['serverAuth'] }), 'client'), [ChainReason.EXT_KEY_USAGE]);
  const clientCa = await root.child({ name: 'client-only int', spec: { extKeyUsage: ['clientAuth'] } });
  compare('client-only intermediate', svidCase(await clientCa.issueSvid(ID), 'server'), [ChainReason.EXT_KEY_USAGE]);
});

test('pathLen exceeded', { skip }, async () => {
  const p0 = await root.child({ name: 'pathlen 0', pathLen: 0 });
  const below = await p0.child({ name: 'below pathlen 0' });
  const ours = compare('pathLen', svidCase(await below.issueSvid(ID)), [ChainReason.PATH_LENGTH]);
  assert.ok(!ours.ok && ours.reasons[0]!.depth === 2);
});

test('DNS name constraint violation (permitted and excluded)', { skip }, async () => {
  const nc = await root.child({ name: 'dns nc', spec: { nameConstraints: { permitted: { dns: ['example.com'] }, excluded: { dns: ['bad.example.com'] } } } });
  compare('inside', svidCase(await nc.issueServer(['a.example.com'])), []);
  compare('outside permitted', svidCase(await nc.issueServer(['evil.org'])), [ChainReason.NAME_CONSTRAINTS]);
  compare('in excluded', svidCase(await nc.issueServer(['x.bad.example.com'])), [ChainReason.NAME_CONSTRAINTS]);
  const ipNc = await root.child({ name: 'ip nc', spec: { nameConstraints: { permitted: { ip: ['10.0.0.0/8'] } } } });
  compare('IP inside', svidCase(await ipNc.issue({ subject: 'CN=ip', sans: [{ type: 'ip', value: '10.2.3.4' }] })), []);
  compare('IP outside', svidCase(await ipNc.issue({ subject: 'CN=ip', sans: [{ type: 'ip', value: '192.168.0.1' }] })), [ChainReason.NAME_CONSTRAINTS]);
});

test('CA:false issuer, and a CA without keyCertSign', { skip }, async () => {
  const notCa = await root.child({ name: 'not a ca', spec: { basicConstraints: { ca: false }, keyUsage: ['digitalSignature'] } });
  compare('CA:false issuer', svidCase(await notCa.issueSvid(ID)), [ChainReason.NOT_CA, ChainReason.KEY_USAGE]);
  const noKcs = await root.child({ name: 'no keyCertSign', spec: { keyUsage: ['cRLSign', 'digitalSignature'] } });
  compare('no keyCertSign', svidCase(await noKcs.issueSvid(ID)), [ChainReason.KEY_USAGE]);
});

test('bad signature, unknown critical extension, missing issuer, untrusted root, hostname', { skip }, async () => {
  const good = await int.issueSvid(ID);
  const der = Buffer.from(good.cert.der);
  der[der.length - 1] ^= 0x01;
  compare('tampered signature', { ...svidCase(good), leaf: Certificate.fromDer(der) }, [ChainReason.SIGNATURE]);

  const odd = { oid: '1.3.6.1.4.1.99999.1', critical: true, value: new Uint8Array([0x05, 0x00]) };
  compare('unknown critical extension', svidCase(await int.issueSvid(ID, { extraExtensions: [odd] })), [ChainReason.UNKNOWN_CRITICAL_EXTENSION]);

  compare('missing intermediate', { ...svidCase(good), intermediates: [] }, [ChainReason.NO_ISSUER]);

  const stranger = await TestCA.root({ name: 'stranger root' });
  const sInt = await stranger.child({ name: 'stranger int' });
  const sLeaf = await sInt.issueSvid(ID);
  compare('untrusted root', { leaf: sLeaf.cert, intermediates: [sInt.cert, stranger.cert], roots: [root.cert], purpose: 'server' }, [ChainReason.UNTRUSTED_ROOT]);

  compare('hostname mismatch', svidCase(await int.issueServer(['api.example.com']), 'server', { hostname: 'www.example.com' }), [ChainReason.HOSTNAME]);
});

test('two roots with the same subject (rotation): all three pick the right one', { skip }, async () => {
  const oldRoot = await TestCA.root({ name: 'rotating root' });
  const newRoot = await TestCA.root({ name: 'rotating root' });
  const oldLeaf = await (await oldRoot.child({ name: 'old int' })).issueSvid(ID);
  const newLeaf = await (await newRoot.child({ name: 'new int' })).issueSvid(ID);
  const roots = [oldRoot.cert, newRoot.cert];
  compare('old leaf, both roots', { leaf: oldLeaf.cert, intermediates: oldLeaf.chain.slice(1), roots, purpose: 'client' }, []);
  compare('new leaf, both roots', { leaf: newLeaf.cert, intermediates: newLeaf.chain.slice(1), roots, purpose: 'client' }, []);
});

// ------------------------------------------------------------------------------------------------------------
// Where OpenSSL and GnuTLS disagree with each other: pinned, so that a change in either is noticed.

test('URI name constraints (SPIFFE trust domain): OpenSSL enforces them, GnuTLS 3.7 ignores them, we enforce', { skip }, async () => {
  const nc = await root.child({ name: 'uri nc', spec: { nameConstraints: { permitted: { uri: ['cluster.local'] } } } });
  compare('spiffe ID inside', svidCase(await nc.issueSvid(ID)), []);
  const bad: Case = svidCase(await nc.issueSvid('spiffe://evil.local/ns/a/sa/b'));
  const ours = validateChain({ ...bad });
  assert.deepEqual(summary(ours), 'nameConstraints@0');
  const o = opensslVerify(bad);
  assert.equal(o.ok, false);
  assert.match(o.errors[0]!.text, OPENSSL_TEXT.nameConstraints);
  assert.equal(gnutlsVerify(bad).ok, true, 'GnuTLS now enforces URI name constraints: update this test and the report');
});

test('anyExtendedKeyUsage alone: OpenSSL refuses it for TLS, GnuTLS accepts, we refuse unless asked', { skip }, async () => {
  const c = svidCase(await int.issueSvid(ID, { extKeyUsage: ['any'] }));
  assert.equal(summary(validateChain(c)), 'extKeyUsage@0');
  assert.equal(validateChain({ ...c, acceptAnyExtendedKeyUsage: true }).ok, true);
  const o = opensslVerify(c);
  assert.equal(o.ok, false);
  assert.match(o.errors[0]!.text, OPENSSL_TEXT.extKeyUsage);
  assert.equal(gnutlsVerify(c).ok, true);
});

test('leaf key usage unfit for the TLS role: OpenSSL refuses it, GnuTLS does not look, we refuse', { skip }, async () => {
  // keyEncipherment serves an RSA key exchange on a server, never a client's signature (OpenSSL's ku_reject rule).
  const c = svidCase(await int.issueSvid(ID, { keyUsage: ['keyEncipherment'] }), 'client');
  assert.equal(summary(validateChain(c)), 'keyUsage@0');
  const o = opensslVerify(c);
  assert.equal(o.ok, false);
  assert.match(o.errors[0]!.text, /unsuitable certificate purpose/);
  assert.equal(gnutlsVerify(c).ok, true);
  compare('keyEncipherment leaf as server', { ...c, purpose: 'server' }, []);
});

// ------------------------------------------------------------------------------------------------------------
// Certificates made by OpenSSL itself.

const OPENSSL_CNF = `[req]
distinguished_name = dn
prompt = no
[dn]
[root_ku]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
[root_plain]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
basicConstraints = critical,CA:true
[int]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
[leaf]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:web.example.com,URI:${ID},IP:10.1.2.3
`;

function mustRun(args: string[]): string {
  const r = openssl(args);
  assert.equal(r.status, 0, `openssl ${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

interface OpensslCa {
  cert: string;
  key: string;
}

/** `openssl req -x509` root: EC P-256 or RSA-2048, with or without a key usage extension. */
function opensslRoot(name: string, key: 'ec' | 'rsa', section: 'root_ku' | 'root_plain'): OpensslCa {
  const cnf = tmp.file('openssl.cnf', OPENSSL_CNF);
  const keyArgs = key === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  const out = { cert: tmp.file(`${name}.pem`), key: tmp.file(`${name}.key`) };
  mustRun(['req', '-x509', '-config', cnf, '-extensions', section, ...keyArgs, '-nodes', '-keyout', out.key, '-out', out.cert, '-subj', `/O=openssl interop/CN=${name}`, '-days', '30']);
  return out;
}

/** `openssl req` + `openssl x509 -req -CA`: a certificate signed by `ca` with the extensions of `section`. */
function opensslIssue(name: string, ca: OpensslCa, key: 'ec' | 'rsa', section: 'int' | 'leaf'): OpensslCa {
  const cnf = tmp.file('openssl.cnf', OPENSSL_CNF);
  const keyArgs = key === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  const out = { cert: tmp.file(`${name}.pem`), key: tmp.file(`${name}.key`) };
  const csr = tmp.file(`${name}.csr`);
  mustRun(['req', '-new', '-config', cnf, ...keyArgs, '-nodes', '-keyout', out.key, '-out', csr, '-subj', `/O=openssl interop/CN=${name}`]);
  mustRun(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '10', '-extfile', cnf, '-extensions', section, '-out', out.cert]);
  return out;
}

function load(path: string): Certificate {
  return Certificate.parse(readFileSync(path), path);
}

test('certificates made by openssl req -x509 (EC and RSA) parse with the fields OpenSSL prints', { skip }, () => {
  for (const kind of ['ec', 'rsa'] as const) {
    const r = opensslRoot(`parsed-${kind}-root`, kind, 'root_ku');
    const cert = load(r.cert);
    assert.equal(cert.subject, `O=openssl interop, CN=parsed-${kind}-root`);
    assert.ok(cert.isSelfIssued);
    assert.ok(cert.isCA);
    assert.equal(cert.basicConstraints?.critical, true);
    assert.deepEqual(cert.keyUsage, ['keyCertSign', 'cRLSign']);
    assert.equal(cert.key.kind, kind);
    assert.equal(cert.subjectKeyId, cert.authorityKeyId);
    const ski = mustRun(['x509', '-in', r.cert, '-noout', '-ext', 'subjectKeyIdentifier']).split('\n')[1]!.trim().replace(/:/g, '').toLowerCase();
    assert.equal(cert.subjectKeyId, ski);
    const serial = mustRun(['x509', '-in', r.cert, '-noout', '-serial']).trim().replace(/^serial=/, '').toLowerCase().replace(/^0+/, '');
    assert.equal(cert.serial.replace(/^0+/, ''), serial);
    // A self-signed root validates against itself.
    assert.equal(validateChain({ leaf: cert, roots: [cert] }).ok, true);
  }
});

test('a chain made entirely by openssl: EC root, RSA intermediate, EC leaf', { skip }, () => {
  const r = opensslRoot('ossl-root', 'ec', 'root_ku');
  const i = opensslIssue('ossl-int', r, 'rsa', 'int');
  const l = opensslIssue('ossl-leaf', i, 'ec', 'leaf');
  const [rootC, intC, leafC] = [load(r.cert), load(i.cert), load(l.cert)];
  assert.deepEqual(leafC.sans, { dns: ['web.example.com'], ip: ['10.1.2.3'], uri: [ID], email: [] });
  assert.deepEqual(leafC.spiffeIds, [ID]);
  assert.deepEqual(checkX509Svid(leafC), []);
  assert.equal(intC.basicConstraints?.pathLen, 0);
  const c: Case = { leaf: leafC, intermediates: [intC], roots: [rootC], purpose: 'server', hostname: 'web.example.com' };
  compare('openssl-made chain', c, []);
  compare('openssl-made chain, by IP', { ...c, hostname: '10.1.2.3', purpose: 'client' }, []);
  compare('openssl-made chain, wrong host', { ...c, hostname: 'db.example.com' }, [ChainReason.HOSTNAME]);
});

test('a root without key usage (openssl req -x509 defaults): only OpenSSL -x509_strict refuses it', { skip }, () => {
  const r = opensslRoot('plain-root', 'rsa', 'root_plain');
  const i = opensslIssue('plain-int', r, 'ec', 'int');
  const l = opensslIssue('plain-leaf', i, 'ec', 'leaf');
  const c: Case = { leaf: load(l.cert), intermediates: [load(i.cert)], roots: [load(r.cert)], purpose: 'server' };
  assert.equal(c.roots[0]!.keyUsage, null);
  assert.equal(validateChain(c).ok, true);
  assert.equal(opensslVerify(c, false).ok, true);
  assert.equal(gnutlsVerify(c).ok, true);
  const strict = opensslVerify(c, true);
  assert.equal(strict.ok, false);
  assert.match(strict.errors[0]!.text, /CA cert does not include key usage extension/);
  assert.equal(strict.errors[0]!.depth, 2);
});
