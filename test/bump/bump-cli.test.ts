import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { MESHCERT_BIN, REPO_ROOT, meshcert } from '../helpers/cli.js';
import { childEnv } from '../helpers/meshcert-process.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { exec, makePki, startUpstream, tempDir, type Pki, type Upstream } from './bump-fixture.js';

const haveCurl = (await exec('curl', ['--version'])).code === 0;
const skip = skipUnlessCi(!haveCurl ? 'curl is needed' : false);

describe('meshcert bump (the built CLI, as a real process)', { skip }, () => {
  let tmp: ReturnType<typeof tempDir>;
  let pki: Pki;
  let upstream: Upstream;

  before(async () => {
    tmp = tempDir('meshcert-bump-cli-');
    pki = await makePki();
    upstream = await startUpstream(pki.good);
  });
  after(async () => {
    await upstream?.close();
    tmp?.cleanup();
  });

  it('bump ca init makes the CA (key 0600), prints how clients trust it, and never replaces it silently', async () => {
    const r = await meshcert(['bump', 'ca', 'init', '--ca-dir', `${tmp.dir}/ca`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /--cacert .*ca-cert\.pem/);
    assert.match(r.stdout, /update-ca-certificates/);
    assert.doesNotMatch(r.stdout + r.stderr, /PRIVATE KEY/);
    assert.equal(statSync(`${tmp.dir}/ca/ca-key.pem`).mode & 0o777, 0o600);
    const again = await meshcert(['bump', 'ca', 'init', '--ca-dir', `${tmp.dir}/ca`]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /MESH_ERR_CA_EXISTS/);
  });

  it('a bad config is refused with the field path', async () => {
    const file = `${tmp.dir}/bad.yaml`;
    writeFileSync(file, 'filters:\n  - deny: { pathPrefix: admin }\nmimic: { cacheSize: 0 }\n');
    const r = await meshcert(['bump', '--config', file]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /filters\[0\]\.deny\.pathPrefix/);
    assert.match(r.stderr, /mimic\.cacheSize/);
    assert.match(r.stderr, /MESH_ERR_CONFIG/);
  });

  it('--help documents the configuration', async () => {
    const r = await meshcert(['bump', '--help']);
    assert.equal(r.status, 0);
    for (const key of ['transparentListen', 'caDir', 'onInvalidCertificate', 'splice', 'auditLog', 'maxValidity', 'module']) assert.match(r.stdout, new RegExp(key));
  });

  it('runs: curl through it gets the upstream, filters (built-in and a user module) apply, audit written; SIGTERM stops it', async () => {
    assert.ok(existsSync(`${tmp.dir}/ca/ca-cert.pem`), 'made by the first test');
    writeFileSync(`${tmp.dir}/public-ca.pem`, pki.publicCa.cert.pem);
    writeFileSync(
      `${tmp.dir}/tag-filter.mjs`,
      `export default (options) => ({
  name: 'tag',
  onRequest(req) {
    req.headers['x-module'] = options.tag;
    if (req.path === '/blocked-by-module') return { deny: 'the module says no' };
  },
});
`,
    );
    writeFileSync(
      `${tmp.dir}/bump.yaml`,
      `listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0 }
caDir: ca
upstream:
  caFile: public-ca.pem
  resolve: { "upstream.test:443": "127.0.0.1:${upstream.port}" }
filters:
  - deny: { host: upstream.test, pathPrefix: /admin }
  - addRequestHeader: { name: x-bumped-by, value: meshcert }
  - module: { path: ./tag-filter.mjs, options: { tag: from-module } }
auditLog: audit.jsonl
mimic: { prefillKeyTypes: [ec-p256] }
`,
    );
    const child = spawn(process.execPath, [MESHCERT_BIN, 'bump', '--config', `${tmp.dir}/bump.yaml`, '--log-level', 'warn'], {
      cwd: REPO_ROOT,
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      let m: RegExpExecArray | null = null;
      for (let i = 0; i < 300 && !m; i++) {
        m = /explicit proxy \(CONNECT, http:\/\/\): (\S+)[\s\S]*healthz {2}http:\/\/(\S+)\/metrics/.exec(out);
        if (!m) {
          if (child.exitCode !== null) break;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      assert.ok(m, `no banner:\n${out}\n${err}`);
      const proxy = `http://${m[1]}`;
      const caFile = `${tmp.dir}/ca/ca-cert.pem`;
      const ok = await exec('curl', ['-sS', '-x', proxy, '--cacert', caFile, 'https://upstream.test/via-cli']);
      assert.equal(ok.code, 0, ok.stderr);
      const echo = JSON.parse(ok.stdout) as { headers: Record<string, string> };
      assert.equal(echo.headers['x-bumped-by'], 'meshcert');
      assert.equal(echo.headers['x-module'], 'from-module');
      const denied = await exec('curl', ['-sS', '-x', proxy, '--cacert', caFile, '-w', '\n%{http_code}', 'https://upstream.test/admin']);
      assert.match(denied.stdout, /\n403$/);
      const byModule = await exec('curl', ['-sS', '-x', proxy, '--cacert', caFile, '-w', '\n%{http_code}', 'https://upstream.test/blocked-by-module']);
      assert.match(byModule.stdout, /the module says no[\s\S]*\n403$/);
      const metrics = await (await fetch(`http://${m[2]}/metrics`)).text();
      assert.match(metrics, /meshcert_bump_requests_total\{protocol="h2",decision="denied"\} 2/);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, err);
    assert.match(out, /stopped \(SIGTERM\)/);
    const audit = readFileSync(`${tmp.dir}/audit.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { url: string; status: number });
    assert.deepEqual(
      audit.map((a) => [a.url, a.status]),
      [
        ['https://upstream.test/via-cli', 200],
        ['https://upstream.test/admin', 403],
        ['https://upstream.test/blocked-by-module', 403],
      ],
    );
  });
});
