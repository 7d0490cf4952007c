// The command line itself: --help on every command and subcommand (exit 0, its options listed), usage errors
// (exit 2), and `meshcert demo`, the README's first command.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { tempDir } from '../helpers/test-ca.js';
import { inParallel, meshcert, show, type CliResult } from '../helpers/cli.js';

/** Every command with the options its help must mention (from the issue and the README). */
const COMMANDS: Array<[string, string[]]> = [
  ['', ['--version', '--help', 'demo', 'ca', 'cert', 'crl', 'ocsp', 'Exit codes']],
  ['demo', ['--keep', '--json']],
  ['ca', ['init', 'show']],
  ['ca init', ['--data-dir', '--trust-domain', '--key', 'ec-p256', 'ec-p384', 'rsa-2048', '--ttl', '--org', '--plugin', '--public-url', '--json', 'ca-key.pem (0600)']],
  ['ca show', ['--data-dir', '--json']],
  ['cert', ['issue', 'inspect', 'verify', 'revoke', 'list']],
  ['cert issue', ['--data-dir', '--spiffe', '--dns', '--ip', '--csr', '--ttl', '--key', '--must-staple', '--out-dir', '--json', 'cert-chain.pem', 'key.pem', 'root-cert.pem']],
  ['cert inspect', ['<file>', '--json']],
  ['cert verify', ['<file>', '--ca', '--untrusted', '--purpose', '--at', '--json']],
  ['cert revoke', ['<serial>', '--data-dir', '--server', '--token-file', '--trust-domain', 'additionalTrustDomains', '--reason', 'keyCompromise', '--json']],
  ['cert list', ['--data-dir', '--server', '--token-file', '--trust-domain', '--status', '--json']],
  ['crl', ['make']],
  ['crl make', ['--data-dir', '--out', '--next-update', '--der', '--json']],
  ['ocsp', ['make', 'check']],
  ['ocsp make', ['--data-dir', '--cert', '--out', '--valid', '--hash', 'sha1', 'sha256', '--json']],
  ['ocsp check', ['<staple>', '--cert', '--issuer', '--at', '--json']],
];

describe('meshcert --help on every command and subcommand', () => {
  const results = new Map<string, CliResult>();
  before(async () => {
    await inParallel(COMMANDS, async ([cmd]) => {
      results.set(cmd, await meshcert([...cmd.split(' ').filter(Boolean), '--help']));
    });
  });

  for (const [cmd, mentions] of COMMANDS) {
    test(`meshcert ${cmd}${cmd ? ' ' : ''}--help: exit 0, mentions ${mentions.join(' ')}`, () => {
      const r = results.get(cmd)!;
      assert.equal(r.status, 0, show(r));
      assert.ok(r.stdout.startsWith(`Usage: meshcert${cmd ? ` ${cmd}` : ''} `), show(r));
      for (const m of mentions) assert.ok(r.stdout.includes(m), `"${m}" missing from:\n${r.stdout}`);
      assert.equal(r.stderr, '');
    });
  }
});

describe('usage errors exit 2', () => {
  const tmp = tempDir('meshcert-cli-usage-');
  const cases: Array<{ name: string; args: string[]; stderr: RegExp; hint?: boolean }> = [
    { name: 'an unknown option', args: ['cert', 'issue', '--data-dir', tmp.dir, '--spiffe', 'spiffe://cluster.local/ns/a/sa/b', '--frobnicate', '--out-dir', `${tmp.dir}/out`], stderr: /unknown option '--frobnicate'/, hint: true },
    { name: 'a missing required option', args: ['cert', 'issue', '--data-dir', tmp.dir, '--spiffe', 'spiffe://cluster.local/ns/a/sa/b'], stderr: /required option '--out-dir <dir>' not specified/, hint: true },
    { name: 'an unknown command', args: ['frobnicate'], stderr: /unknown command 'frobnicate'/, hint: true },
    { name: 'a command group without its subcommand', args: ['cert'], stderr: /Usage: meshcert cert/ },
    { name: 'cert issue with no identity (MESH_ERR_USAGE)', args: ['cert', 'issue', '--data-dir', tmp.dir, '--out-dir', `${tmp.dir}/out`], stderr: /give --spiffe ID, or --dns NAME.*\[MESH_ERR_USAGE\]/ },
  ];
  const results = new Map<string, CliResult>();
  before(async () => {
    await inParallel(cases, async (c) => {
      results.set(c.name, await meshcert(c.args));
    });
  });
  after(() => tmp.cleanup());

  for (const c of cases) {
    test(`${c.name}: exit 2 with a message on stderr`, () => {
      const r = results.get(c.name)!;
      assert.equal(r.status, 2, show(r));
      assert.match(r.stderr, c.stderr);
      if (c.hint) assert.match(r.stderr, /\n\(run with --help for usage\)\n$/, 'points to --help');
      assert.equal(r.stdout, '');
    });
  }

  test('nothing was written by any of them', () => {
    assert.deepEqual(readdirSync(tmp.dir), []);
  });
});

describe('meshcert demo', () => {
  test('exits 0, prints the SVID inspection with its SPIFFE ID, and leaves no temp dir behind', async () => {
    const tmp = tempDir('meshcert-cli-demo-');
    try {
      const r = await meshcert(['demo'], { env: { TMPDIR: tmp.dir } });
      assert.equal(r.status, 0, show(r));
      assert.match(r.stdout, /Created a mesh CA \(trust domain cluster\.local\)/);
      assert.match(r.stdout, /Chain check against root-cert\.pem: OK/);
      assert.match(r.stdout, /^Certificate:\n/m);
      assert.match(r.stdout, /SPIFFE ID: spiffe:\/\/cluster\.local\/ns\/default\/sa\/demo\n/);
      assert.match(r.stdout, /Extended key usage: serverAuth, clientAuth/);
      assert.deepEqual(readdirSync(tmp.dir), [], 'the demo data dir was removed');
    } finally {
      tmp.cleanup();
    }
  });
});
