// `meshcert ca init --plugin DIR`: an enterprise root and intermediate made by `openssl req` / `openssl x509` in
// Istio's cacerts layout are adopted, and the chains issued from them pass OpenSSL's and GnuTLS's verifiers.
// Inconsistent plug-in folders are refused with MESH_ERR_CA_PLUGIN and leave no data dir behind.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/test-ca.js';
import { certtool, openssl, type ToolResult } from '../helpers/tools.js';
import { cliError, fileMode, inParallel, meshcert, meshcertJson, show, snapshotDir } from '../helpers/cli.js';

function ok(r: ToolResult, what: string): ToolResult {
  assert.equal(r.status, 0, `${what}:\n${r.stdout}${r.stderr}`);
  return r;
}

const KEYGEN = { ec: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], rsa: ['-newkey', 'rsa:2048'] } as const;

/** Writes an extension file for `openssl x509 -req -extfile`. */
function extFile(dir: string, name: string, lines: string[]): string {
  const p = join(dir, name);
  writeFileSync(p, `${lines.join('\n')}\n`);
  return p;
}

/**
 * An enterprise PKI made by OpenSSL alone: a root (`root-key.pem` kept aside, outside the plug-in folder) and an
 * intermediate, laid out as Istio's cacerts: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem (ca + root).
 */
function enterprisePki(dir: string, alg: 'ec' | 'rsa', caExt: string[] = ['basicConstraints=critical,CA:TRUE,pathlen:0', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']): {
  pluginDir: string;
  rootKey: string;
  csr: string;
} {
  const pluginDir = join(dir, 'cacerts');
  mkdirSync(pluginDir, { recursive: true });
  const rootKey = join(dir, 'root-key.pem');
  const root = join(pluginDir, 'root-cert.pem');
  ok(
    openssl([
      'req', '-x509', ...KEYGEN[alg], '-nodes', '-keyout', rootKey, '-out', root, '-days', '365',
      '-subj', `/O=Corp ${alg}/CN=Corp Root CA`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]),
    'openssl req -x509 (root)',
  );
  const csr = join(dir, 'intermediate.csr');
  ok(
    openssl(['req', '-new', ...KEYGEN[alg], '-nodes', '-keyout', join(pluginDir, 'ca-key.pem'), '-out', csr, '-subj', `/O=Corp ${alg}/CN=Mesh Intermediate CA`]),
    'openssl req -new (intermediate)',
  );
  signIntermediate(dir, csr, root, rootKey, join(pluginDir, 'ca-cert.pem'), caExt);
  writeFileSync(join(pluginDir, 'cert-chain.pem'), readFileSync(join(pluginDir, 'ca-cert.pem'), 'utf8') + readFileSync(root, 'utf8'));
  return { pluginDir, rootKey, csr };
}

function signIntermediate(dir: string, csr: string, root: string, rootKey: string, out: string, ext: string[]): void {
  const ef = extFile(dir, 'ca-ext.cnf', [...ext, 'subjectKeyIdentifier=hash', 'authorityKeyIdentifier=keyid:always']);
  ok(
    openssl(['x509', '-req', '-in', csr, '-CA', root, '-CAkey', rootKey, '-set_serial', `0x${Date.now().toString(16)}`, '-days', '200', '-sha256', '-extfile', ef, '-out', out]),
    'openssl x509 -req (intermediate)',
  );
}

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

function normalizePem(p: string): string {
  return p.trim().replace(/\r/g, '');
}

describe('meshcert ca init --plugin: adopting an enterprise intermediate', () => {
  const tmp = tempDir('meshcert-cli-plugin-');
  const setups = {
    ec: { dir: join(tmp.dir, 'ec'), data: join(tmp.dir, 'ec-data'), out: join(tmp.dir, 'ec-workload'), td: 'cluster.local', init: null as any },
    rsa: { dir: join(tmp.dir, 'rsa'), data: join(tmp.dir, 'rsa-data'), out: join(tmp.dir, 'rsa-workload'), td: 'corp.example', init: null as any },
  };
  const issued: Record<string, any> = {};

  before(async () => {
    for (const alg of ['ec', 'rsa'] as const) enterprisePki(setups[alg].dir, alg);
    [setups.ec.init, setups.rsa.init] = await Promise.all([
      meshcertJson(['ca', 'init', '--plugin', join(setups.ec.dir, 'cacerts'), '--data-dir', setups.ec.data]),
      meshcertJson(['ca', 'init', '--plugin', join(setups.rsa.dir, 'cacerts'), '--data-dir', setups.rsa.data, '--trust-domain', 'corp.example']),
    ]);
    const [ec, rsa] = await Promise.all(
      (['ec', 'rsa'] as const).map((alg) =>
        meshcertJson(['cert', 'issue', '--data-dir', setups[alg].data, '--spiffe', `spiffe://${setups[alg].td}/ns/pay/sa/api`, '--dns', 'api.pay.svc', '--out-dir', setups[alg].out]),
      ),
    );
    issued.ec = ec;
    issued.rsa = rsa;
  });
  after(() => tmp.cleanup());

  for (const alg of ['ec', 'rsa'] as const) {
    test(`${alg}: the plug-in files are adopted as they are, the key 0600`, () => {
      const s = setups[alg];
      assert.equal(s.init.mode, 'plugin');
      assert.equal(s.init.certificate.subject, `O=Corp ${alg}, CN=Mesh Intermediate CA`);
      assert.equal(s.init.certificate.publicKey, alg === 'ec' ? 'ec-p256' : 'rsa-2048');
      const plugin = join(s.dir, 'cacerts');
      for (const f of ['ca-cert.pem', 'root-cert.pem']) {
        assert.equal(readFileSync(join(s.data, f), 'utf8'), readFileSync(join(plugin, f), 'utf8'), f);
      }
      // cert-chain.pem keeps Istio's form: the intermediate, then the root.
      const chain = pemBlocks(readFileSync(join(s.data, 'cert-chain.pem'), 'utf8')).map(normalizePem);
      assert.deepEqual(chain, [readFileSync(join(plugin, 'ca-cert.pem'), 'utf8'), readFileSync(join(plugin, 'root-cert.pem'), 'utf8')].map(normalizePem));
      assert.equal(fileMode(join(s.data, 'ca-key.pem')), 0o600);
      const a = ok(openssl(['pkey', '-in', join(s.data, 'ca-key.pem'), '-pubout']), 'pkey');
      const b = ok(openssl(['pkey', '-in', join(plugin, 'ca-key.pem'), '-pubout']), 'pkey');
      assert.equal(a.stdout, b.stdout);
      assert.equal(JSON.parse(readFileSync(join(s.data, 'ca.json'), 'utf8')).trustDomain, s.td);
    });

    test(`${alg}: cert issue gives leaf + intermediate in cert-chain.pem and the enterprise root in root-cert.pem`, () => {
      const s = setups[alg];
      const plugin = join(s.dir, 'cacerts');
      const chain = pemBlocks(readFileSync(join(s.out, 'cert-chain.pem'), 'utf8'));
      assert.equal(chain.length, 2, 'cert-chain.pem holds the leaf and the intermediate, no root');
      assert.equal(normalizePem(chain[1]!), normalizePem(readFileSync(join(plugin, 'ca-cert.pem'), 'utf8')));
      assert.equal(normalizePem(readFileSync(join(s.out, 'root-cert.pem'), 'utf8')), normalizePem(readFileSync(join(plugin, 'root-cert.pem'), 'utf8')));
      const leafIssuer = ok(openssl(['x509', '-in', join(s.out, 'cert-chain.pem'), '-noout', '-issuer']), 'issuer').stdout;
      assert.match(leafIssuer, /CN = Mesh Intermediate CA/);
      assert.deepEqual(issued[alg].certificate.spiffeIds, [`spiffe://${s.td}/ns/pay/sa/api`]);
    });

    test(`${alg}: openssl verify -x509_strict (sslclient, sslserver) accepts the issued chain`, () => {
      const s = setups[alg];
      const chain = join(s.out, 'cert-chain.pem');
      const root = join(s.out, 'root-cert.pem');
      for (const purpose of ['sslclient', 'sslserver']) {
        const r = openssl(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', root, '-untrusted', chain, chain]);
        assert.equal(r.status, 0, `${purpose}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /cert-chain\.pem: OK/);
      }
      // Without the intermediate the leaf does not verify: the chain file is what makes it work.
      const leafOnly = join(s.out, 'leaf-only.pem');
      writeFileSync(leafOnly, pemBlocks(readFileSync(chain, 'utf8'))[0]!);
      const bad = openssl(['verify', '-CAfile', root, leafOnly]);
      assert.notEqual(bad.status, 0, bad.stdout);
    });

    test(`${alg}: GnuTLS certtool --verify-chain and --verify --load-ca-certificate accept the issued chain`, () => {
      const s = setups[alg];
      const full = join(s.out, 'full-chain.pem');
      writeFileSync(full, readFileSync(join(s.out, 'cert-chain.pem'), 'utf8') + readFileSync(join(s.out, 'root-cert.pem'), 'utf8'));
      const vc = certtool(['--verify-chain', '--infile', full]);
      assert.equal(vc.status, 0, vc.stdout + vc.stderr);
      assert.match(vc.stdout, /Chain verification output: Verified/);
      assert.doesNotMatch(vc.stdout, /Not verified/);
      const v = certtool(['--verify', '--load-ca-certificate', join(s.out, 'root-cert.pem'), '--infile', join(s.out, 'cert-chain.pem')]);
      assert.equal(v.status, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /Chain verification output: Verified/);
    });
  }

  test('meshcert cert verify accepts the plug-in chain against the enterprise root', async () => {
    const s = setups.ec;
    const r = await meshcertJson(['cert', 'verify', '--ca', join(s.out, 'root-cert.pem'), '--purpose', 'server', join(s.out, 'cert-chain.pem')]);
    assert.equal(r.ok, true);
    assert.deepEqual(
      r.chain.map((c: { subject: string }) => c.subject),
      ['', 'O=Corp ec, CN=Mesh Intermediate CA', 'O=Corp ec, CN=Corp Root CA'],
    );
  });
});

describe('meshcert ca init --plugin: inconsistent folders are refused', () => {
  const tmp = tempDir('meshcert-cli-badplugin-');
  const good = join(tmp.dir, 'good');
  let goodPki: ReturnType<typeof enterprisePki>;

  before(() => {
    goodPki = enterprisePki(good, 'ec');
  });
  after(() => tmp.cleanup());

  /** A copy of the good plug-in folder, then broken by `breakIt`. */
  function variant(name: string, breakIt: (dir: string) => void): string {
    const dir = join(tmp.dir, name);
    cpSync(goodPki.pluginDir, dir, { recursive: true });
    breakIt(dir);
    return dir;
  }

  test('key mismatch, CA:FALSE, a chain not reaching root-cert.pem, a missing file: exit 1, MESH_ERR_CA_PLUGIN, no data dir', async () => {
    const cases = [
      {
        name: 'key-mismatch',
        mentions: ['ca-key.pem', 'does not match'],
        dir: variant('key-mismatch', (d) => ok(openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(d, 'ca-key.pem')]), 'genpkey')),
      },
      {
        name: 'ca-false',
        mentions: ['ca-cert.pem', 'CA:TRUE', 'keyCertSign'],
        dir: variant('ca-false', (d) => {
          signIntermediate(d, goodPki.csr, join(d, 'root-cert.pem'), goodPki.rootKey, join(d, 'ca-cert.pem'), ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature']);
          writeFileSync(join(d, 'cert-chain.pem'), readFileSync(join(d, 'ca-cert.pem'), 'utf8') + readFileSync(join(d, 'root-cert.pem'), 'utf8'));
        }),
      },
      {
        name: 'other-root',
        mentions: ['root-cert.pem', 'cert-chain.pem'],
        dir: variant('other-root', (d) =>
          ok(
            openssl([
              'req', '-x509', ...KEYGEN.ec, '-nodes', '-keyout', join(tmp.dir, 'other-root-key.pem'), '-out', join(d, 'root-cert.pem'),
              '-days', '30', '-subj', '/CN=Some Other Root', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
            ]),
            'other root',
          ),
        ),
      },
      { name: 'missing-file', mentions: ['cert-chain.pem', 'missing'], dir: variant('missing-file', (d) => rmSync(join(d, 'cert-chain.pem'))) },
    ];
    const snapshots = cases.map((c) => snapshotDir(c.dir));
    // Half the data dirs exist (empty) beforehand: they must stay empty; the others must not appear.
    cases.forEach((c, i) => {
      if (i % 2 === 1) mkdirSync(join(tmp.dir, `${c.name}-data`));
    });
    const results = await inParallel(cases, (c, i) =>
      meshcert(['ca', 'init', '--plugin', c.dir, '--data-dir', join(tmp.dir, `${c.name}-data`), ...(i % 2 === 0 ? ['--json'] : [])]),
    );
    cases.forEach((c, i) => {
      const r = results[i]!;
      assert.equal(r.status, 1, show(r));
      assert.equal(r.stdout, '', show(r));
      const err = cliError(r);
      assert.equal(err?.code, 'MESH_ERR_CA_PLUGIN', show(r));
      for (const m of c.mentions) assert.ok(err!.message.includes(m), `${c.name}: "${m}" not in: ${err!.message}`);
      const data = join(tmp.dir, `${c.name}-data`);
      if (i % 2 === 1) assert.deepEqual(readdirSync(data), [], `${c.name}: the data dir was written to`);
      else assert.ok(!existsSync(data), `${c.name}: the data dir was created`);
      assert.deepEqual(snapshotDir(c.dir), snapshots[i], `${c.name}: the plug-in folder was changed`);
    });
  });

  test('an unreadable key file in the plug-in folder names the file', async () => {
    const dir = variant('garbage-key', (d) => writeFileSync(join(d, 'ca-key.pem'), 'not a key\n'));
    const r = await meshcert(['ca', 'init', '--plugin', dir, '--data-dir', join(tmp.dir, 'garbage-key-data')]);
    assert.equal(r.status, 1, show(r));
    const err = cliError(r);
    assert.match(err?.code ?? '', /^MESH_ERR_/);
    assert.ok(err!.message.includes(join(dir, 'ca-key.pem')), err!.message);
    assert.ok(!existsSync(join(tmp.dir, 'garbage-key-data')));
  });
});
