// `meshcert cert inspect` on what OpenSSL made (certificates, CSRs, CRLs, OCSP requests) and on what meshcert made
// (bundles, CRLs, OCSP responses), PEM and DER, recognised by content whatever the file is called; and
// `meshcert cert verify` with its exit codes and typed reasons.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/test-ca.js';
import { openssl, type ToolResult } from '../helpers/tools.js';
import { inParallel, meshcert, meshcertOk, parseJson, show, type CliResult } from '../helpers/cli.js';

function ok(r: ToolResult, what: string): ToolResult {
  assert.equal(r.status, 0, `${what}:\n${r.stdout}${r.stderr}`);
  return r;
}

function opensslSerial(file: string, inform = 'PEM'): string {
  return ok(openssl(['x509', '-in', file, '-inform', inform, '-noout', '-serial']), 'serial').stdout.trim().replace(/^serial=/, '');
}

describe('meshcert cert inspect and cert verify', () => {
  const tmp = tempDir('meshcert-cli-inspect-');
  const data = join(tmp.dir, 'ca');
  const f = (n: string): string => join(tmp.dir, n);
  const svid = join(tmp.dir, 'svid');
  const server = join(tmp.dir, 'server');
  const inspected: Record<string, CliResult> = {};
  let svidNotAfter: Date;

  before(async () => {
    // OpenSSL's own PKI: a self-signed CA, a CSR, a CRL by `openssl ca -gencrl`.
    ok(
      openssl([
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ossl-key.pem'), '-out', f('ossl-cert.pem'),
        '-days', '30', '-subj', '/O=OpenSSL Made/CN=ossl.example.com', '-addext', 'subjectAltName=DNS:ossl.example.com,URI:spiffe://ossl.example/ns/a/sa/b',
      ]),
      'openssl req -x509',
    );
    // DER under a name that says PEM, PEM under a name that says DER: detection is by content.
    ok(openssl(['x509', '-in', f('ossl-cert.pem'), '-outform', 'DER', '-out', f('cert-as-der.pem')]), 'x509 -outform DER');
    writeFileSync(f('cert-as-pem.der'), readFileSync(f('ossl-cert.pem')));
    ok(
      openssl([
        'req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('csr-key.pem'), '-out', f('request.crt'), '-subj', '/CN=csr.example.com',
        '-addext', 'subjectAltName=DNS:csr.example.com,IP:10.1.2.3',
      ]),
      'openssl req -new',
    );
    ok(openssl(['req', '-in', f('request.crt'), '-outform', 'DER', '-out', f('request.bin')]), 'req -outform DER');
    writeFileSync(f('index.txt'), '');
    writeFileSync(f('crlnumber'), '2A\n');
    writeFileSync(
      f('ca.cnf'),
      [
        '[ ca ]', 'default_ca = CA_default', '[ CA_default ]', `database = ${f('index.txt')}`, `crlnumber = ${f('crlnumber')}`,
        'default_md = sha256', 'default_crl_days = 7', 'crl_extensions = crl_ext', '[ crl_ext ]', 'authorityKeyIdentifier = keyid:always', '',
      ].join('\n'),
    );
    ok(openssl(['ca', '-gencrl', '-config', f('ca.cnf'), '-keyfile', f('ossl-key.pem'), '-cert', f('ossl-cert.pem'), '-out', f('openssl.crl')]), 'openssl ca -gencrl');

    // meshcert's PKI: a CA, an SVID and a server certificate, a CRL and an OCSP response.
    await meshcertOk(['ca', 'init', '--data-dir', data]);
    await inParallel(
      [
        ['--spiffe', 'spiffe://cluster.local/ns/shop/sa/checkout', '--out-dir', svid],
        ['--dns', 'web.example.com', '--out-dir', server],
      ],
      (args) => meshcertOk(['cert', 'issue', '--data-dir', data, ...args]),
    );
    await inParallel(
      [
        ['crl', 'make', '--data-dir', data, '--out', f('ours.crl')],
        ['ocsp', 'make', '--data-dir', data, '--cert', join(svid, 'cert-chain.pem'), '--out', f('ours.ocsp')],
      ],
      (args) => meshcertOk(args),
    );
    ok(openssl(['ocsp', '-issuer', join(data, 'ca-cert.pem'), '-cert', join(svid, 'cert-chain.pem'), '-reqout', f('openssl.ocspreq')]), 'openssl ocsp -reqout');
    writeFileSync(f('bundle.pem'), readFileSync(join(svid, 'cert-chain.pem'), 'utf8') + readFileSync(join(data, 'ca-cert.pem'), 'utf8'));
    svidNotAfter = new Date(ok(openssl(['x509', '-in', join(svid, 'cert-chain.pem'), '-noout', '-enddate']), 'enddate').stdout.trim().replace('notAfter=', ''));

    // One PEM file of every kind (named .der: detection is by content), read in text and in JSON; DER files alone.
    writeFileSync(
      f('mixed.der'),
      [f('ossl-cert.pem'), join(svid, 'cert-chain.pem'), join(data, 'ca-cert.pem'), f('request.crt'), f('ours.crl'), f('openssl.crl')]
        .map((p) => readFileSync(p, 'utf8'))
        .join(''),
    );
    const runs: Array<[string, string[], Buffer?]> = [
      ['mixedText', [f('mixed.der')]],
      ['mixed', [f('mixed.der'), '--json']],
      ['certDer', [f('cert-as-der.pem'), '--json']],
      ['csrDer', [f('request.bin')]],
      ['ourOcsp', ['-', '--json'], readFileSync(f('ours.ocsp'))],
      ['opensslOcspReq', [f('openssl.ocspreq'), '--json']],
    ];
    await inParallel(runs, async ([name, args, input]) => {
      inspected[name] = await meshcert(['cert', 'inspect', ...args], input ? { input } : {});
    });
  });
  after(() => tmp.cleanup());

  function json(name: string): any {
    const r = inspected[name]!;
    assert.equal(r.status, 0, show(r));
    return parseJson(r.stdout, r);
  }
  function text(name: string): string {
    const r = inspected[name]!;
    assert.equal(r.status, 0, show(r));
    return r.stdout;
  }

  describe('cert inspect', () => {
    test('a certificate made by openssl, DER (named .pem): --json has kind and fields', () => {
      const j = json('certDer');
      assert.equal(j.kind, 'certificate');
      assert.equal(j.fields.subject, 'O=OpenSSL Made, CN=ossl.example.com');
      assert.equal(j.fields.serial, opensslSerial(f('cert-as-der.pem'), 'DER'));
      assert.equal(j.fields.publicKey, 'ec-p256');
      assert.equal(j.fields.selfSigned, true);
      assert.deepEqual(j.fields.spiffeIds, ['spiffe://ossl.example/ns/a/sa/b']);
      assert.ok(j.fields.sans.includes('DNS:ossl.example.com'), j.fields.sans);
      const fp = ok(openssl(['x509', '-in', f('ossl-cert.pem'), '-noout', '-fingerprint', '-sha256']), 'fingerprint').stdout;
      assert.equal(j.fields.sha256Fingerprint, fp.trim().replace(/^.*=/, '').replace(/:/g, '').toLowerCase());
    });

    test('a PEM file (named .der) with certificates, a CSR and CRLs gives one entry per object, in order', () => {
      const j = json('mixed');
      assert.ok(Array.isArray(j), 'an array for several objects');
      assert.deepEqual(j.map((x: { kind: string }) => x.kind), ['certificate', 'certificate', 'certificate', 'csr', 'crl', 'crl']);
      assert.equal(j[0].fields.subject, 'O=OpenSSL Made, CN=ossl.example.com');
      assert.equal(j[0].fields.serial, opensslSerial(f('ossl-cert.pem')));
      assert.deepEqual(j[1].fields.spiffeIds, ['spiffe://cluster.local/ns/shop/sa/checkout']);
      assert.equal(j[1].fields.ca, false);
      assert.equal(j[2].fields.subject, 'O=cluster.local, CN=meshcert root CA');
      assert.equal(j[2].fields.ca, true);
    });

    test('a CSR made by openssl: PEM (named .crt) and DER', () => {
      const csr = json('mixed')[3];
      assert.equal(csr.kind, 'csr');
      assert.equal(csr.fields.subject, 'CN=csr.example.com');
      assert.equal(csr.fields.publicKey, 'rsa-2048');
      assert.equal(csr.fields.signatureValid, true);
      assert.deepEqual(csr.fields.requestedSans, ['DNS:csr.example.com', 'IP:10.1.2.3']);
      const t = text('csrDer');
      assert.match(t, /^Certificate request:\n/);
      assert.match(t, /Subject: CN=csr\.example\.com/);
      assert.match(t, /Signature Valid: yes/);
    });

    test('a CRL made by meshcert crl make', () => {
      const crl = json('mixed')[4];
      assert.equal(crl.kind, 'crl');
      assert.equal(crl.fields.issuer, 'O=cluster.local, CN=meshcert root CA');
      assert.equal(String(crl.fields.crlNumber), '1');
      assert.ok(crl.fields.nextUpdate);
    });

    test('a CRL made by openssl ca -gencrl', () => {
      const crl = json('mixed')[5];
      assert.equal(crl.kind, 'crl');
      assert.equal(crl.fields.issuer, 'O=OpenSSL Made, CN=ossl.example.com');
      assert.equal(BigInt(crl.fields.crlNumber), 0x2an);
      const ski = ok(openssl(['x509', '-in', f('ossl-cert.pem'), '-noout', '-ext', 'subjectKeyIdentifier']), 'ski').stdout;
      const hex = /\n\s+([0-9A-F:]+)/.exec(ski)![1]!.replace(/:/g, '').toLowerCase();
      assert.equal(crl.fields.authorityKeyId, hex);
    });

    test('an OCSP response made by meshcert ocsp make (read from standard input)', () => {
      const j = json('ourOcsp');
      assert.equal(j.kind, 'ocsp-response');
      assert.equal(j.fields.responseStatus, 'successful');
      const [resp] = j.fields.responses;
      assert.equal(resp.serial, opensslSerial(join(svid, 'cert-chain.pem')));
      assert.equal(resp.status, 'good');
      assert.equal(resp.hashAlgorithm, 'sha1');
    });

    test('an OCSP request made by openssl ocsp -reqout', () => {
      const j = json('opensslOcspReq');
      assert.equal(j.kind, 'ocsp-request');
      const [req] = j.fields.requests;
      assert.equal(req.serial, opensslSerial(join(svid, 'cert-chain.pem')));
      assert.equal(req.hashAlgorithm, 'sha1');
      // openssl adds a nonce by default.
      assert.ok(JSON.stringify(j.fields).toLowerCase().includes('nonce'), JSON.stringify(j.fields));
    });

    test('text output: titled entries, the SVID with its SPIFFE ID', () => {
      const t = text('mixedText');
      assert.match(t, /^Certificate 1 of 6:\n/);
      assert.match(t, /Certificate request 4 of 6:\n/);
      assert.match(t, /CRL 6 of 6:\n/);
      assert.match(t, /SPIFFE ID: spiffe:\/\/cluster\.local\/ns\/shop\/sa\/checkout\n/);
      assert.match(t, /Subject: \(empty\)/);
      assert.match(t, /Subject: O=OpenSSL Made, CN=ossl\.example\.com/);
    });
  });

  describe('cert verify', { concurrency: true }, () => {
    test('a good chain: exit 0, OK, the chain with its SPIFFE ID', async () => {
      const [t, j] = await Promise.all([
        meshcert(['cert', 'verify', '--ca', join(svid, 'root-cert.pem'), '--purpose', 'client', join(svid, 'cert-chain.pem')]),
        meshcert(['cert', 'verify', '--ca', join(svid, 'root-cert.pem'), '--purpose', 'server', '--json', join(svid, 'cert-chain.pem')]),
      ]);
      assert.equal(t.status, 0, show(t));
      assert.match(t.stdout, /cert-chain\.pem: OK\n\s+0: spiffe:\/\/cluster\.local\/ns\/shop\/sa\/checkout\n\s+1: O=cluster\.local, CN=meshcert root CA/);
      assert.equal(j.status, 0, show(j));
      const v = parseJson(j.stdout, j);
      assert.equal(v.ok, true);
      assert.equal(v.chain.length, 2);
      assert.deepEqual(v.chain[0].spiffeIds, ['spiffe://cluster.local/ns/shop/sa/checkout']);
      assert.equal(v.chain[0].serial, opensslSerial(join(svid, 'cert-chain.pem')));
    });

    test('expired (--at after notAfter): exit 1 with the reason code "expired" in --json', async () => {
      const at = new Date(svidNotAfter.getTime() + 3_600_000).toISOString();
      const r = await meshcert(['cert', 'verify', '--ca', join(svid, 'root-cert.pem'), '--at', at, '--json', join(svid, 'cert-chain.pem')]);
      assert.equal(r.status, 1, show(r));
      const v = parseJson(r.stdout, r);
      assert.equal(v.ok, false);
      assert.deepEqual(v.reasons.map((x: { code: string; depth: number }) => [x.code, x.depth]), [['expired', 0]]);
    });

    test('wrong purpose (a server certificate for a client): exit 1, extKeyUsage', async () => {
      const t = await meshcert(['cert', 'verify', '--ca', join(server, 'root-cert.pem'), '--purpose', 'client', join(server, 'cert-chain.pem')]);
      assert.equal(t.status, 1, show(t));
      assert.match(t.stdout, /verification failed\n\s+depth 0: extKeyUsage: /);
      assert.doesNotMatch(t.stdout, /depth [1-9]/, 'the only problem is the purpose');
    });

    test('another CA\'s bundle: exit 1', async () => {
      const r = await meshcert(['cert', 'verify', '--ca', f('ossl-cert.pem'), '--json', join(svid, 'cert-chain.pem')]);
      assert.equal(r.status, 1, show(r));
      assert.equal(parseJson(r.stdout, r).ok, false);
    });
  });
});
