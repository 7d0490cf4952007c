// Bad input on the command line: each case must fail with a non-zero exit and a MESH_ERR_ code whose message
// names the file or value at fault, write nothing where it was told to write, and leave the CA and its ledger as
// they were (`cert list --json` before and after).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/test-ca.js';
import { openssl, type ToolResult } from '../helpers/tools.js';
import { cliError, inParallel, meshcert, meshcertJson, meshcertOk, show, snapshotDir, type CliResult } from '../helpers/cli.js';

function ok(r: ToolResult, what: string): ToolResult {
  assert.equal(r.status, 0, `${what}:\n${r.stdout}${r.stderr}`);
  return r;
}

interface Case {
  name: string;
  /** Arguments after `meshcert`; OUT stands for this case's own output path, DATA for the CA's data dir. */
  args: string[];
  code: string;
  /** Texts the error message must contain (the file, field or value at fault). */
  mentions: string[];
  json?: boolean;
}

describe('bad input: clear typed errors, nothing written, ledger unchanged', () => {
  const tmp = tempDir('meshcert-cli-bad-');
  const data = join(tmp.dir, 'ca');
  const f = (n: string): string => join(tmp.dir, n);
  const outOf = (c: Case): string => join(tmp.dir, 'out', c.name);
  let ledgerBefore: unknown;
  let caBefore: Record<string, string>;
  const results = new Map<string, CliResult>();

  const ID = 'spiffe://cluster.local/ns/shop/sa/cart';
  const cases: Case[] = [
    { name: 'garbage-csr', args: ['cert', 'issue', '--spiffe', ID, '--csr', f('garbage.csr'), '--out-dir', 'OUT'], code: 'MESH_ERR_CSR_PARSE', mentions: [f('garbage.csr')] },
    { name: 'truncated-der-csr', args: ['cert', 'issue', '--spiffe', ID, '--csr', f('truncated.der'), '--out-dir', 'OUT'], code: 'MESH_ERR_CSR_PARSE', mentions: [f('truncated.der')], json: true },
    { name: 'key-as-csr', args: ['cert', 'issue', '--spiffe', ID, '--csr', f('key.pem'), '--out-dir', 'OUT'], code: 'MESH_ERR_PEM', mentions: [f('key.pem'), 'CERTIFICATE REQUEST'] },
    { name: 'csr-bad-signature', args: ['cert', 'issue', '--spiffe', ID, '--csr', f('badsig.csr'), '--out-dir', 'OUT'], code: 'MESH_ERR_CSR_SIGNATURE', mentions: [f('badsig.csr'), 'signature'], json: true },
    { name: 'rsa-1024-csr', args: ['cert', 'issue', '--spiffe', ID, '--csr', f('weak.csr'), '--out-dir', 'OUT'], code: 'MESH_ERR_KEY_TOO_WEAK', mentions: [f('weak.csr'), '1024', '2048'] },
    { name: 'missing-csr', args: ['cert', 'issue', '--spiffe', ID, '--csr', f('no-such.csr'), '--out-dir', 'OUT'], code: 'MESH_ERR_FILE_READ', mentions: [f('no-such.csr')] },
    { name: 'spiffe-dot-segment', args: ['cert', 'issue', '--spiffe', 'spiffe://cluster.local/ns/../sa/admin', '--out-dir', 'OUT'], code: 'MESH_ERR_SPIFFE_ID', mentions: ['spiffe://cluster.local/ns/../sa/admin', 'dot segment'] },
    { name: 'spiffe-single-dot', args: ['cert', 'issue', '--spiffe', 'spiffe://cluster.local/ns/./sa/x', '--out-dir', 'OUT'], code: 'MESH_ERR_SPIFFE_ID', mentions: ['spiffe://cluster.local/ns/./sa/x'], json: true },
    { name: 'spiffe-port', args: ['cert', 'issue', '--spiffe', 'spiffe://cluster.local:8443/ns/a/sa/b', '--out-dir', 'OUT'], code: 'MESH_ERR_SPIFFE_ID', mentions: ['spiffe://cluster.local:8443/ns/a/sa/b', 'port'] },
    { name: 'spiffe-uppercase-td', args: ['cert', 'issue', '--spiffe', 'spiffe://Cluster.Local/ns/a/sa/b', '--out-dir', 'OUT'], code: 'MESH_ERR_SPIFFE_ID', mentions: ['spiffe://Cluster.Local/ns/a/sa/b'] },
    { name: 'spiffe-wrong-td', args: ['cert', 'issue', '--spiffe', 'spiffe://other.example/ns/a/sa/b', '--out-dir', 'OUT'], code: 'MESH_ERR_POLICY', mentions: ['other.example', 'cluster.local'], json: true },
    { name: 'ttl-bogus', args: ['cert', 'issue', '--spiffe', ID, '--ttl', 'bogus', '--out-dir', 'OUT'], code: 'MESH_ERR_DURATION', mentions: ['--ttl', 'bogus'] },
    { name: 'bad-dns-name', args: ['cert', 'issue', '--dns', 'bad name!', '--out-dir', 'OUT'], code: 'MESH_ERR_SAN', mentions: ['bad name!'] },
    { name: 'out-dir-is-a-file', args: ['cert', 'issue', '--spiffe', ID, '--out-dir', f('a-file/sub')], code: 'MESH_ERR_FILE_WRITE', mentions: [f('a-file')] },
    { name: 'crl-out-is-a-directory', args: ['crl', 'make', '--out', f('leaf')], code: 'MESH_ERR_FILE_WRITE', mentions: [f('leaf'), 'directory'] },
    { name: 'no-ca', args: ['cert', 'issue', '--data-dir', f('no-ca'), '--spiffe', ID, '--out-dir', 'OUT'], code: 'MESH_ERR_CA_NOT_FOUND', mentions: [f('no-ca')] },
    { name: 'inspect-garbage', args: ['cert', 'inspect', f('garbage.csr')], code: 'MESH_ERR_UNKNOWN_FORMAT', mentions: [f('garbage.csr')] },
    { name: 'inspect-truncated', args: ['cert', 'inspect', f('truncated.der')], code: 'MESH_ERR_UNKNOWN_FORMAT', mentions: [f('truncated.der')], json: true },
    { name: 'revoke-bad-serial', args: ['cert', 'revoke', 'xyz-123'], code: 'MESH_ERR_SERIAL', mentions: ['xyz-123'] },
    { name: 'ocsp-check-garbage', args: ['ocsp', 'check', '--cert', f('leaf/cert-chain.pem'), '--issuer', join(data, 'ca-cert.pem'), f('garbage.csr')], code: 'MESH_ERR_OCSP_PARSE', mentions: [f('garbage.csr')] },
  ];

  /** Commands that take a data dir get the test CA's. */
  function argv(c: Case): string[] {
    const args = c.args.map((a) => (a === 'OUT' ? outOf(c) : a));
    const takesDataDir = ['issue', 'revoke', 'make'].includes(args[1]!) && !args.includes('--data-dir');
    return [...args.slice(0, 2), ...(takesDataDir ? ['--data-dir', data] : []), ...args.slice(2), ...(c.json ? ['--json'] : [])];
  }

  before(async () => {
    // The bad files, made by openssl where a real tool would make them.
    writeFileSync(f('garbage.csr'), Buffer.concat([Buffer.from([0x04, 0x82, 0xff, 0xff]), Buffer.from('this is not a certificate request\n'.repeat(8))]));
    ok(
      openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('key.pem'), '-subj', '/CN=x', '-outform', 'DER', '-out', f('good.der')]),
      'EC CSR',
    );
    const good = readFileSync(f('good.der'));
    writeFileSync(f('truncated.der'), good.subarray(0, Math.floor(good.length * 0.6)));
    // The signature is the last field: flip a bit of its last byte (the ECDSA s value), the DER stays well formed.
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 0x01;
    writeFileSync(f('badsig.csr'), `-----BEGIN CERTIFICATE REQUEST-----\n${bad.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`);
    const parses = openssl(['req', '-in', f('badsig.csr'), '-noout', '-verify']);
    assert.match(parses.stdout + parses.stderr, /verify failure|bad signature|Certificate request self-signature did not match/i, 'openssl agrees the signature is bad');
    ok(openssl(['req', '-new', '-newkey', 'rsa:1024', '-nodes', '-keyout', f('weak-key.pem'), '-subj', '/CN=weak', '-out', f('weak.csr')]), 'RSA 1024 CSR');
    writeFileSync(f('a-file'), 'I am a file, not a folder\n');

    await meshcertOk(['ca', 'init', '--data-dir', data]);
    await meshcertOk(['cert', 'issue', '--data-dir', data, '--dns', 'leaf.example.com', '--out-dir', f('leaf')]);
    ledgerBefore = await meshcertJson(['cert', 'list', '--data-dir', data]);
    caBefore = snapshotDir(data);
    delete caBefore['ledger.db'];
    // One output dir exists (empty) beforehand: it must stay empty.
    mkdirSync(join(tmp.dir, 'out', 'garbage-csr'), { recursive: true });
    await inParallel(cases, async (c) => {
      results.set(c.name, await meshcert(argv(c), { cwd: tmp.dir }));
    });
  });
  after(() => tmp.cleanup());

  for (const c of cases) {
    test(`${c.name}: exit 1, ${c.code} naming ${c.mentions.map((m) => m.replace(/^.*\//, '')).join(', ')}`, () => {
      const r = results.get(c.name)!;
      assert.equal(r.status, 1, show(r));
      assert.equal(r.stdout, '', `nothing on stdout: ${show(r)}`);
      if (c.json) assert.match(r.stderr, /^\{"error":\{"code":"MESH_ERR_/, 'with --json the error is JSON');
      else assert.match(r.stderr, /^meshcert: error: /);
      const err = cliError(r);
      assert.equal(err?.code, c.code, show(r));
      for (const m of c.mentions) assert.ok(err!.message.includes(m), `"${m}" not in: ${err!.message}`);
      assert.doesNotMatch(r.stderr, /\n\s+at .*\(.*:\d+:\d+\)/, 'no stack trace');
      const out = outOf(c);
      if (c.name === 'garbage-csr') assert.deepEqual(readdirSync(out), [], 'the existing output dir stays empty');
      else assert.ok(!existsSync(out), `${out} was created`);
    });
  }

  test('the CA files and the ledger are unchanged (no certificate, no CRL number spent); nothing else appeared', async () => {
    const caAfter = snapshotDir(data);
    delete caAfter['ledger.db'];
    for (const k of Object.keys(caAfter)) if (/^ledger\.db-(wal|shm)$/.test(k)) delete caAfter[k];
    for (const k of Object.keys(caBefore)) if (/^ledger\.db-(wal|shm)$/.test(k)) delete caBefore[k];
    assert.deepEqual(caAfter, caBefore);
    assert.deepEqual(await meshcertJson(['cert', 'list', '--data-dir', data]), ledgerBefore);
    assert.ok(!existsSync(f('no-ca')), 'no data dir was made where there was no CA');
    assert.ok(!existsSync(f('.meshcert')), 'no default data dir was made in the working directory');
    assert.deepEqual(readdirSync(join(tmp.dir, 'out')), ['garbage-csr']);
    // The failed crl make spent no CRL number.
    const crl = await meshcertJson(['crl', 'make', '--data-dir', data, '--out', f('first.crl')]);
    assert.equal(crl.crlNumber, '1');
  });
});
