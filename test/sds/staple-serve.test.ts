// `meshcert serve` fetches OCSP staples for its gateway secrets and serves them to Envoy over SDS.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { systemClock } from '../../src/core/index.js';
import { OcspResponse } from '../../src/pki/index.js';
import { StapleCache, STAPLE_CACHE_DIR, checkSecrets } from '../../src/secrets/index.js';
import { SdsClient } from '../../src/sds/index.js';
import { ControlPlane } from '../../src/server/index.js';
import { TestCA } from '../helpers/test-ca.js';
import { makeConfig, tempDir } from '../server/fixtures.js';
import { FakeResponder } from '../secrets/fake-responder.js';
import { manifestYaml, writeAtomic } from './secret-fixtures.js';

test('serve fetches the staple of a PREFERRED secret from its responder, sends it over SDS, caches it, and a config can turn it off', async () => {
  const root = tempDir('meshcert-serve-staples-');
  const ca = await (await TestCA.root({ name: 'serve staple root' })).child({ name: 'serve staple CA' });
  const responder = await FakeResponder.start(ca, systemClock);
  const leaf = await ca.issueServer(['gw.example.com'], { ocspUrls: [responder.url] });
  const secrets = join(root, 'secrets');
  mkdirSync(secrets);
  writeAtomic(join(secrets, 'gw.yaml'), manifestYaml({ name: 'gw', policy: 'PREFERRED', data: { 'tls.crt': leaf.chainPem, 'tls.key': leaf.keyPem } }));
  const dataDir = join(root, 'data');
  const cp = new ControlPlane();
  let client: SdsClient | null = null;
  try {
    await cp.start(makeConfig({ sds: { secrets, uds: `unix:${join(root, 'sds.sock')}`, staples: { timeout: '2s' } } }), dataDir);
    client = new SdsClient({ target: `unix:${cp.addresses.sds!.uds}`, names: ['kubernetes://gw'], node: { id: 'router~gw', cluster: 'ingress' } }).start();
    const stapleOf = (s: { payload: { kind: string; ocspStaple?: Buffer | null } }) => (s.payload.kind === 'tlsCertificate' ? (s.payload.ocspStaple ?? null) : null);
    const got = await client.waitFor('kubernetes://gw', (s) => stapleOf(s) !== null);
    const staple = OcspResponse.parse(stapleOf(got)!);
    assert.equal(staple.responses[0]!.certId.serial, leaf.cert.serial);
    assert.equal(staple.responses[0]!.status, 'good');
    assert.equal(cp.stapleRefresher!.stateOf('gw')!.lastAttempt!.result, 'good');
    assert.ok(responder.requests.length >= 1);

    // Cached in the data dir, where `meshcert secret check --data-dir` finds it.
    const files = readdirSync(join(dataDir, STAPLE_CACHE_DIR)).filter((f) => f.endsWith('.json'));
    assert.equal(files.length, 1);
    const report = checkSecrets([secrets], { stapleCache: StapleCache.forDataDir(dataDir) });
    assert.equal(report.ok, true);
    assert.equal(report.secrets[0]!.staple?.origin, 'fetched');
  } catch (err) {
    await responder.close();
    throw err;
  } finally {
    client?.close();
    await cp.stop();
  }

  // fetch: off — no request, nothing cached, the secret goes without a staple.
  const before = responder.requests.length;
  const dataDir2 = join(root, 'data2');
  const off = new ControlPlane();
  try {
    await off.start(makeConfig({ sds: { secrets, uds: `unix:${join(root, 'sds2.sock')}`, staples: { fetch: 'off' } } }), dataDir2);
    assert.equal(off.stapleRefresher, null);
    assert.equal(off.secretSource!.get('gw')!.served!.evaluation.staple?.state, 'none');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(responder.requests.length, before);
    assert.equal(existsSync(join(dataDir2, STAPLE_CACHE_DIR)), false);
  } finally {
    await off.stop();
    await responder.close();
  }
});
