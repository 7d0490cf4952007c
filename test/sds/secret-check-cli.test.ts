// `meshcert secret check PATH… [--json]` as a user runs it (the built bin/meshcert): the report, the reasons in
// words, and the exit code (0 when every secret is servable, 1 otherwise, 2 for usage errors).
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { meshcert, parseJson, show } from '../helpers/cli.js';
import { tempDir } from '../helpers/test-ca.js';
import { HOUR, gatewayPki, makeStaple, manifestYaml, otherLeaf, tlsData, writeAtomic, writeMountedSecret, type GatewayPki } from './secret-fixtures.js';

const tmp = tempDir('meshcert-cli-secret-');
const good = join(tmp.dir, 'good');
const bad = join(tmp.dir, 'bad');
let pki: GatewayPki;

before(async () => {
  pki = await gatewayPki();
  mkdirSync(good);
  mkdirSync(bad);
  const staple = await makeStaple(pki.ca, pki.leaf.cert);
  writeAtomic(join(good, 'gw.yaml'), manifestYaml({ name: 'gw', policy: 'MANDATORY', data: tlsData(pki, { 'tls.ocsp-staple': staple, 'ca.crt': pki.root.cert.pem }) }));
  writeMountedSecret(join(good, 'mounted'), tlsData(pki));
  const wrong = await makeStaple(pki.ca, (await otherLeaf(pki)).cert);
  writeAtomic(
    join(bad, 'bad.yaml'),
    manifestYaml(
      { name: 'no-staple', policy: 'MANDATORY', data: tlsData(pki) },
      { name: 'wrong-staple', policy: 'PREFERRED', data: tlsData(pki, { 'tls.ocsp': wrong }) },
      { name: 'fine', data: tlsData(pki) },
    ),
  );
});
after(() => tmp.cleanup());

test('every secret servable: exit 0, a report per secret', async () => {
  const r = await meshcert(['secret', 'check', good]);
  assert.equal(r.status, 0, show(r));
  assert.match(r.stdout, /^gw \(.*gw.yaml\): servable$/m);
  assert.match(r.stdout, /policy: MANDATORY \(declared\); Envoy MUST_STAPLE/);
  assert.match(r.stdout, /staple \(tls.ocsp-staple\): valid, status good/);
  assert.match(r.stdout, /Envoy \(SDS\): kubernetes:\/\/gw sent with the staple/);
  assert.match(r.stdout, /Envoy \(SDS\): kubernetes:\/\/gw-cacert sent/);
  assert.match(r.stdout, /^mounted \(.*mounted\): servable$/m);
  assert.match(r.stdout, /2 secrets, all servable/);
});

test('refused or withheld secrets: exit 1 with the reasons in words; --json has the same verdicts', async () => {
  const r = await meshcert(['secret', 'check', bad]);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stdout, /^no-staple \(.*\): NOT servable: MANDATORY policy but no OCSP staple$/m);
  assert.match(r.stdout, /^wrong-staple \(.*\): NOT servable: PREFERRED policy with a broken staple: the certificate is not used$/m);
  assert.match(r.stdout, /kubernetes:\/\/wrong-staple WITHHELD/);
  assert.match(r.stdout, /^fine \(.*\): servable$/m);
  assert.match(r.stdout, /2 of 3 secrets not servable/);
  const j = await meshcert(['secret', 'check', bad, '--json']);
  assert.equal(j.status, 1);
  const report = parseJson<{ ok: boolean; secrets: Array<{ name: string; servable: boolean; verdict: string }> }>(j.stdout, j);
  assert.equal(report.ok, false);
  assert.deepEqual(
    report.secrets.map((s) => [s.name, s.servable]),
    [
      ['fine', true],
      ['no-staple', false],
      ['wrong-staple', false],
    ],
  );
});

test('--policy for mounted folders, --at, and usage errors', async () => {
  const m = await meshcert(['secret', 'check', join(good, 'mounted'), '--policy', 'mounted=MANDATORY']);
  assert.equal(m.status, 1, show(m));
  assert.match(m.stdout, /MANDATORY policy but no OCSP staple/);
  const later = await meshcert(['secret', 'check', join(good, 'gw.yaml'), '--at', new Date(Date.now() + 2 * HOUR).toISOString()]);
  assert.equal(later.status, 1, show(later));
  assert.match(later.stdout, /NOT servable: MANDATORY policy with an expired staple: the certificate is not used/);
  assert.equal((await meshcert(['secret', 'check', good, '--policy', 'mounted'])).status, 2);
  assert.equal((await meshcert(['secret', 'check', good, '--policy', 'mounted=ALWAYS'])).status, 2);
  assert.equal((await meshcert(['secret', 'check', good, '--at', 'yesterday'])).status, 2);
  assert.equal((await meshcert(['secret', 'check'])).status, 2);
  const missing = await meshcert(['secret', 'check', join(tmp.dir, 'nope')]);
  assert.equal(missing.status, 1);
  assert.match(missing.stdout, /no such file or folder/);
});
