// `meshcert cert issue`: X509-SVIDs, DNS/IP server certificates, certificates for a CSR, lifetimes, must-staple and
// key types, each checked with OpenSSL (`x509 -text`, `verify -x509_strict`) and GnuTLS certtool.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/test-ca.js';
import { certtool, openssl, type ToolResult } from '../helpers/tools.js';
import { inParallel, meshcert, meshcertJson, fileMode, parseJson, show, type CliResult } from '../helpers/cli.js';

const MIN = 60_000;
const HOUR = 60 * MIN;

function ok(r: ToolResult, what: string): ToolResult {
  assert.equal(r.status, 0, `${what}:\n${r.stdout}${r.stderr}`);
  return r;
}

function x509Text(file: string): string {
  return ok(openssl(['x509', '-in', file, '-noout', '-text']), `openssl x509 -text ${file}`).stdout;
}

function opensslDate(file: string, which: 'startdate' | 'enddate'): Date {
  const out = ok(openssl(['x509', '-in', file, '-noout', `-${which}`]), which).stdout;
  const d = new Date(out.trim().replace(/^not(Before|After)=/, ''));
  assert.ok(!Number.isNaN(d.getTime()), out);
  return d;
}

/** The line(s) openssl prints under an extension heading, e.g. "X509v3 Key Usage". */
function extension(text: string, name: string): { critical: boolean; value: string } | null {
  const m = new RegExp(`${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:( critical)?[ \\t]*\\n\\s+([^\\n]*)`).exec(text);
  return m ? { critical: Boolean(m[1]), value: m[2]!.trim() } : null;
}

function verify(out: string, ...extra: string[]): ToolResult {
  const chain = join(out, 'cert-chain.pem');
  return openssl(['verify', '-x509_strict', ...extra, '-CAfile', join(out, 'root-cert.pem'), '-untrusted', chain, chain]);
}

function pubkeyOfCert(file: string): string {
  return ok(openssl(['x509', '-in', file, '-noout', '-pubkey']), 'x509 -pubkey').stdout;
}

interface Job {
  args: string[];
  out: string;
  json?: boolean;
  started?: number;
  finished?: number;
  result?: CliResult;
}

describe('meshcert cert issue', () => {
  const tmp = tempDir('meshcert-cli-issue-');
  const ca = join(tmp.dir, 'ca');
  const shortCa = join(tmp.dir, 'short-ca');
  const out = (name: string): string => join(tmp.dir, name);
  const csrEc = join(tmp.dir, 'ec.csr');
  const csrRsa = join(tmp.dir, 'rsa.csr.der');

  const jobs: Record<string, Job> = {
    svid: { args: ['--spiffe', 'spiffe://cluster.local/ns/shop/sa/checkout'], out: out('svid'), json: true },
    dns: { args: ['--dns', 'web.shop.svc', '--dns', 'web.example.com', '--ip', '10.0.0.7', '--ip', '2001:db8::7'], out: out('dns'), json: true },
    csrEc: { args: ['--spiffe', 'spiffe://cluster.local/ns/shop/sa/cart', '--csr', csrEc], out: out('csr-ec'), json: true },
    csrRsa: { args: ['--spiffe', 'spiffe://cluster.local/ns/shop/sa/ledger', '--csr', csrRsa], out: out('csr-rsa') },
    ttl: { args: ['--spiffe', 'spiffe://cluster.local/ns/shop/sa/short', '--ttl', '1h'], out: out('ttl'), json: true },
    staple: { args: ['--dns', 'staple.example.com', '--must-staple', '--key', 'ec-p384'], out: out('staple') },
    rsa: { args: ['--spiffe', 'spiffe://cluster.local/ns/shop/sa/rsa', '--key', 'rsa-2048'], out: out('rsa') },
  };
  let capped: CliResult;
  let list: any[];

  before(async () => {
    // CSRs by openssl, each asking for identities the CA must ignore.
    ok(
      openssl([
        'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(tmp.dir, 'ec-csr-key.pem'),
        '-subj', '/CN=evil.example', '-addext', 'subjectAltName=DNS:evil.example,URI:spiffe://cluster.local/ns/kube-system/sa/admin', '-out', csrEc,
      ]),
      'EC CSR',
    );
    ok(
      openssl([
        'req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(tmp.dir, 'rsa-csr-key.pem'), '-subj', '/CN=rsa-evil.example',
        '-addext', 'subjectAltName=DNS:rsa-evil.example', '-outform', 'DER', '-out', csrRsa,
      ]),
      'RSA CSR',
    );
    const [a, b] = await Promise.all([meshcert(['ca', 'init', '--data-dir', ca]), meshcert(['ca', 'init', '--data-dir', shortCa, '--ttl', '2h'])]);
    assert.equal(a.status, 0, show(a));
    assert.equal(b.status, 0, show(b));
    const all = Object.values(jobs);
    await inParallel(all, async (j) => {
      j.started = Date.now();
      j.result = await meshcert(['cert', 'issue', '--data-dir', ca, ...j.args, '--out-dir', j.out, ...(j.json ? ['--json'] : [])]);
      j.finished = Date.now();
    });
    capped = await meshcert(['cert', 'issue', '--data-dir', shortCa, '--spiffe', 'spiffe://cluster.local/ns/shop/sa/long', '--out-dir', out('capped')]);
    list = await meshcertJson(['cert', 'list', '--data-dir', ca]);
  });
  after(() => tmp.cleanup());

  function done(name: keyof typeof jobs): { job: Job; json: any } {
    const job = jobs[name]!;
    assert.equal(job.result?.status, 0, job.result && show(job.result));
    return { job, json: job.json ? parseJson(job.result!.stdout, job.result) : null };
  }

  describe('--spiffe: an X509-SVID', () => {
    test('follows the X509-SVID rules, as openssl x509 -text shows them', () => {
      const { job } = done('svid');
      const text = x509Text(join(job.out, 'cert-chain.pem'));
      const san = extension(text, 'X509v3 Subject Alternative Name');
      assert.ok(san, text);
      assert.equal(san.critical, true, 'SAN is critical with an empty subject');
      assert.equal(san.value, 'URI:spiffe://cluster.local/ns/shop/sa/checkout', 'exactly one SAN, the URI');
      assert.equal(text.match(/URI:/g)?.length, 1, 'one URI in the whole certificate (this CA has no --public-url)');
      assert.doesNotMatch(san.value, /DNS:|IP Address:|email:/);
      const subject = ok(openssl(['x509', '-in', join(job.out, 'cert-chain.pem'), '-noout', '-subject']), 'subject').stdout;
      assert.match(subject, /^subject=\s*$/, 'empty subject');
      const bc = extension(text, 'X509v3 Basic Constraints');
      assert.equal(bc?.value, 'CA:FALSE');
      const ku = extension(text, 'X509v3 Key Usage');
      assert.ok(ku, text);
      assert.equal(ku.critical, true);
      assert.match(ku.value, /Digital Signature/);
      assert.doesNotMatch(ku.value, /Certificate Sign|CRL Sign/);
      assert.equal(extension(text, 'X509v3 Extended Key Usage')?.value, 'TLS Web Server Authentication, TLS Web Client Authentication');
    });

    test('openssl verify -x509_strict accepts it for sslclient and sslserver; certtool accepts the chain', () => {
      const { job } = done('svid');
      for (const purpose of ['sslclient', 'sslserver']) {
        const r = verify(job.out, '-purpose', purpose);
        assert.equal(r.status, 0, `${purpose}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /cert-chain\.pem: OK/);
      }
      const full = join(tmp.dir, 'svid-full.pem');
      writeFileSync(full, readFileSync(join(job.out, 'cert-chain.pem'), 'utf8') + readFileSync(join(job.out, 'root-cert.pem'), 'utf8'));
      const vc = certtool(['--verify-chain', '--infile', full]);
      assert.equal(vc.status, 0, vc.stdout + vc.stderr);
      assert.match(vc.stdout, /Chain verification output: Verified/);
      const v = certtool(['--verify', '--load-ca-certificate', join(job.out, 'root-cert.pem'), '--infile', join(job.out, 'cert-chain.pem')]);
      assert.equal(v.status, 0, v.stdout + v.stderr);
    });

    test("writes Istio's files: cert-chain.pem (leaf only under a root CA), key.pem 0600 matching the certificate, root-cert.pem", () => {
      const { job, json } = done('svid');
      assert.deepEqual(readdirSync(job.out).sort(), ['cert-chain.pem', 'key.pem', 'root-cert.pem']);
      assert.equal(fileMode(join(job.out, 'key.pem')), 0o600);
      const chain = readFileSync(join(job.out, 'cert-chain.pem'), 'utf8');
      assert.equal(chain.match(/BEGIN CERTIFICATE/g)?.length, 1);
      assert.equal(readFileSync(join(job.out, 'root-cert.pem'), 'utf8'), readFileSync(join(ca, 'root-cert.pem'), 'utf8'));
      const keyPub = ok(openssl(['pkey', '-in', join(job.out, 'key.pem'), '-pubout']), 'pkey -pubout').stdout;
      assert.equal(pubkeyOfCert(join(job.out, 'cert-chain.pem')), keyPub);
      assert.deepEqual(json.files, [join(job.out, 'cert-chain.pem'), join(job.out, 'key.pem'), join(job.out, 'root-cert.pem')]);
      assert.equal(json.profile, 'svid');
      assert.deepEqual(json.certificate.spiffeIds, ['spiffe://cluster.local/ns/shop/sa/checkout']);
      const serial = ok(openssl(['x509', '-in', join(job.out, 'cert-chain.pem'), '-noout', '-serial']), 'serial').stdout.trim();
      assert.equal(serial, `serial=${json.serial}`);
    });

    test('the ledger lists it (cert list --json)', () => {
      const { json } = done('svid');
      const row = list.find((r) => r.serial === json.serial);
      assert.ok(row, JSON.stringify(list, null, 2));
      assert.equal(row.identity, 'spiffe://cluster.local/ns/shop/sa/checkout');
      assert.equal(row.profile, 'svid');
      assert.equal(row.status, 'valid');
      assert.equal(new Date(row.notAfter).toISOString(), json.certificate.notAfter);
      // Every successful issue is in the ledger, and nothing else is.
      assert.equal(list.length, Object.keys(jobs).length);
    });
  });

  describe('--dns / --ip: a server certificate', () => {
    test('openssl verify -verify_hostname and -verify_ip accept its names and refuse others', () => {
      const { job, json } = done('dns');
      assert.equal(json.profile, 'server');
      for (const name of ['web.shop.svc', 'web.example.com']) {
        const r = verify(job.out, '-purpose', 'sslserver', '-verify_hostname', name);
        assert.equal(r.status, 0, `${name}: ${r.stdout}${r.stderr}`);
      }
      for (const ip of ['10.0.0.7', '2001:db8::7']) {
        const r = verify(job.out, '-purpose', 'sslserver', '-verify_ip', ip);
        assert.equal(r.status, 0, `${ip}: ${r.stdout}${r.stderr}`);
      }
      const wrongName = verify(job.out, '-verify_hostname', 'other.example.com');
      assert.notEqual(wrongName.status, 0);
      assert.match(wrongName.stdout + wrongName.stderr, /hostname mismatch/);
      const wrongIp = verify(job.out, '-verify_ip', '10.0.0.8');
      assert.notEqual(wrongIp.status, 0);
      assert.match(wrongIp.stdout + wrongIp.stderr, /IP address mismatch/);
    });

    test('carries CN = the first DNS name, serverAuth only, and no SPIFFE ID', () => {
      const { job } = done('dns');
      const text = x509Text(join(job.out, 'cert-chain.pem'));
      assert.match(text, /Subject: CN = web\.shop\.svc\n/);
      assert.equal(extension(text, 'X509v3 Extended Key Usage')?.value, 'TLS Web Server Authentication');
      const san = extension(text, 'X509v3 Subject Alternative Name');
      assert.equal(san?.critical, false);
      assert.equal(san?.value, 'DNS:web.shop.svc, DNS:web.example.com, IP Address:10.0.0.7, IP Address:2001:DB8:0:0:0:0:0:7');
      assert.doesNotMatch(text, /spiffe:/);
      // A server-only certificate is not for clients.
      assert.notEqual(verify(job.out, '-purpose', 'sslclient').status, 0);
    });
  });

  describe('--csr FILE: the key stays the requester\'s', () => {
    for (const [name, csr, bits] of [
      ['csrEc', csrEc, '256 bit'],
      ['csrRsa', csrRsa, '2048 bit'],
    ] as const) {
      test(`${name === 'csrEc' ? 'EC P-256 (PEM)' : 'RSA 2048 (DER)'} CSR: certifies its key, writes no key.pem, ignores its SANs and subject`, () => {
        const { job } = done(name);
        assert.deepEqual(readdirSync(job.out).sort(), ['cert-chain.pem', 'root-cert.pem']);
        const csrPub = ok(openssl(['req', '-in', csr, ...(csr.endsWith('.der') ? ['-inform', 'DER'] : []), '-noout', '-pubkey']), 'req -pubkey').stdout;
        assert.equal(pubkeyOfCert(join(job.out, 'cert-chain.pem')), csrPub);
        const text = x509Text(join(job.out, 'cert-chain.pem'));
        assert.match(text, new RegExp(`Public-Key: \\(${bits}\\)`));
        const san = extension(text, 'X509v3 Subject Alternative Name');
        assert.equal(san?.value, `URI:spiffe://cluster.local/ns/shop/sa/${name === 'csrEc' ? 'cart' : 'ledger'}`);
        assert.doesNotMatch(text, /evil\.example|kube-system/);
        assert.match(ok(openssl(['x509', '-in', join(job.out, 'cert-chain.pem'), '-noout', '-subject']), 'subject').stdout, /^subject=\s*$/);
        const ku = extension(text, 'X509v3 Key Usage');
        assert.equal(ku?.value, name === 'csrRsa' ? 'Digital Signature, Key Encipherment' : 'Digital Signature');
        const r = verify(job.out, '-purpose', 'sslclient');
        assert.equal(r.status, 0, r.stdout + r.stderr);
      });
    }
  });

  describe('lifetimes', () => {
    test('--ttl 1h is honoured (within a minute)', () => {
      const { job, json } = done('ttl');
      const notAfter = opensslDate(join(job.out, 'cert-chain.pem'), 'enddate').getTime();
      assert.ok(notAfter >= job.started! + HOUR - MIN && notAfter <= job.finished! + HOUR + MIN, `notAfter ${new Date(notAfter).toISOString()}`);
      const notBefore = opensslDate(join(job.out, 'cert-chain.pem'), 'startdate').getTime();
      assert.ok(notBefore <= job.started! && notBefore >= job.started! - 2 * MIN, `notBefore ${new Date(notBefore).toISOString()}`);
      assert.equal(json.note, null);
    });

    test("a CA made with --ttl 2h caps a 24h request at its own notAfter, and says so", () => {
      assert.equal(capped.status, 0, show(capped));
      const caEnd = opensslDate(join(shortCa, 'ca-cert.pem'), 'enddate').getTime();
      const leafEnd = opensslDate(join(out('capped'), 'cert-chain.pem'), 'enddate').getTime();
      assert.equal(leafEnd, caEnd);
      assert.match(capped.stdout, /note: +lifetime capped at the CA's own expiry/);
      assert.ok(capped.stdout.includes(new Date(caEnd).toISOString()), capped.stdout);
      const r = verify(out('capped'), '-purpose', 'sslclient');
      assert.equal(r.status, 0, r.stdout + r.stderr);
    });
  });

  describe('extensions and key types', () => {
    test('--must-staple adds the TLS Feature status_request (RFC 7633); --key ec-p384 makes a P-384 key', () => {
      const { job } = done('staple');
      const text = x509Text(join(job.out, 'cert-chain.pem'));
      assert.equal(extension(text, 'TLS Feature')?.value, 'status_request');
      assert.match(text, /Public-Key: \(384 bit\)/);
      assert.match(text, /NIST CURVE: P-384/);
      const key = ok(openssl(['pkey', '-in', join(job.out, 'key.pem'), '-noout', '-text']), 'pkey -text').stdout;
      assert.match(key, /Private-Key: \(384 bit\)/);
      assert.equal(fileMode(join(job.out, 'key.pem')), 0o600);
      // Without --must-staple there is no TLS feature.
      assert.equal(extension(x509Text(join(jobs.svid!.out, 'cert-chain.pem')), 'TLS Feature'), null);
      const r = verify(job.out, '-purpose', 'sslserver', '-verify_hostname', 'staple.example.com');
      assert.equal(r.status, 0, r.stdout + r.stderr);
    });

    test('--key rsa-2048 makes an RSA key; the SVID then allows keyEncipherment', () => {
      const { job } = done('rsa');
      assert.match(job.result!.stdout, /Issued svid certificate [0-9A-F]+/);
      const text = x509Text(join(job.out, 'cert-chain.pem'));
      assert.match(text, /Public Key Algorithm: rsaEncryption/);
      assert.match(text, /Public-Key: \(2048 bit\)/);
      assert.equal(extension(text, 'X509v3 Key Usage')?.value, 'Digital Signature, Key Encipherment');
      const key = ok(openssl(['pkey', '-in', join(job.out, 'key.pem'), '-noout', '-text']), 'pkey -text').stdout;
      assert.match(key, /Private-Key: \(2048 bit/);
      assert.equal(pubkeyOfCert(join(job.out, 'cert-chain.pem')), ok(openssl(['pkey', '-in', join(job.out, 'key.pem'), '-pubout']), 'pubout').stdout);
      for (const purpose of ['sslclient', 'sslserver']) assert.equal(verify(job.out, '-purpose', purpose).status, 0);
    });
  });

});
