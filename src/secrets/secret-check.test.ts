import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { tempDir } from '../../test/helpers/test-ca.js';
import {
  HOUR,
  gatewayPki,
  makeCrl,
  makeStaple,
  manifestYaml,
  otherLeaf,
  tlsData,
  writeAtomic,
  writeMountedSecret,
  type GatewayPki,
} from '../../test/sds/secret-fixtures.js';
import { checkSecrets, formatSecretCheck } from './index.js';

let pki: GatewayPki;
const tmp = tempDir('meshcert-check-');
before(async () => {
  pki = await gatewayPki();
});
after(() => tmp.cleanup());

test('a good set: every secret servable, resources and decisions listed', async () => {
  const dir = join(tmp.dir, 'good');
  mkdirSync(dir);
  const staple = await makeStaple(pki.ca, pki.leaf.cert);
  writeAtomic(
    join(dir, 'gw.yaml'),
    manifestYaml(
      { name: 'gw', policy: 'PREFERRED', data: tlsData(pki, { 'tls.ocsp-staple': staple }) },
      { name: 'gw-cacert', type: null, data: { 'ca.crt': pki.root.cert.pem, 'ca.crl': await makeCrl(pki.root) } },
    ),
  );
  writeMountedSecret(join(dir, 'plain'), tlsData(pki, { 'ca.crt': pki.root.cert.pem }));
  const report = checkSecrets([dir]);
  assert.equal(report.ok, true, formatSecretCheck(report));
  const byName = Object.fromEntries(report.secrets.map((s) => [s.name, s]));
  assert.deepEqual(Object.keys(byName), ['gw', 'gw-cacert', 'plain']);
  const gw = byName.gw!;
  assert.equal(gw.verdict, 'servable');
  assert.deepEqual(gw.policy, { declared: 'PREFERRED', declaredBy: 'annotation', effective: 'PREFERRED', envoy: 'STRICT_STAPLING', why: 'PREFERRED (declared)' });
  assert.equal(gw.staple!.state, 'valid');
  assert.equal(gw.staple!.key, 'tls.ocsp-staple');
  assert.equal(gw.gateway!.action, 'staple');
  // gw has no CA side, and the separate gw-cacert secret serves kubernetes://gw-cacert.
  assert.deepEqual(gw.sds.map((r) => [r.resource, r.action]), [['kubernetes://gw', 'send-with-staple']]);
  assert.deepEqual(byName['gw-cacert']!.sds.map((r) => [r.resource, r.kind, r.action]), [['kubernetes://gw-cacert', 'validationContext', 'send']]);
  assert.equal(byName['gw-cacert']!.ca!.crls[0]!.current, true);
  // The mounted secret's own ca.crt feeds plain-cacert.
  assert.deepEqual(
    byName.plain!.sds.map((r) => r.resource),
    ['kubernetes://plain', 'kubernetes://plain-cacert'],
  );
  const text = formatSecretCheck(report);
  assert.match(text, /^gw \(.*gw.yaml \(document 1\)\): servable$/m);
  assert.match(text, /Envoy \(SDS\): kubernetes:\/\/gw sent with the staple/);
  assert.match(text, /3 secrets, all servable/);
});

test('refused, withheld and unused secrets make the report fail, each with its reason in words', async () => {
  const dir = join(tmp.dir, 'bad');
  mkdirSync(dir);
  const wrong = await otherLeaf(pki);
  const brokenStaple = await makeStaple(pki.ca, wrong.cert);
  const expired = await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(Date.now() - 2 * HOUR), nextUpdate: new Date(Date.now() - HOUR) });
  writeAtomic(
    join(dir, 's.yaml'),
    manifestYaml(
      { name: 'mandatory-none', policy: 'MANDATORY', data: tlsData(pki) },
      { name: 'preferred-broken', policy: 'PREFERRED', data: tlsData(pki, { 'tls.ocsp': brokenStaple }) },
      { name: 'preferred-expired', policy: 'PREFERRED', data: tlsData(pki, { 'tls.ocsp': expired }) },
      { name: 'optional-broken', data: tlsData(pki, { 'tls.ocsp': brokenStaple }) },
    ),
  );
  const report = checkSecrets([dir]);
  assert.equal(report.ok, false);
  const v = Object.fromEntries(report.secrets.map((s) => [s.name, [s.servable, s.verdict]]));
  assert.deepEqual(v['mandatory-none'], [false, 'MANDATORY policy but no OCSP staple']);
  assert.deepEqual(v['preferred-broken'], [false, 'PREFERRED policy with a broken staple: the certificate is not used']);
  assert.deepEqual(v['preferred-expired'], [false, 'PREFERRED policy with an expired staple: the certificate is not used']);
  assert.deepEqual(v['optional-broken'], [true, 'servable'], 'OPTIONAL serves without a broken staple');
  const pb = report.secrets.find((s) => s.name === 'preferred-broken')!;
  assert.equal(pb.sds[0]!.action, 'withhold');
  assert.match(pb.staple!.reasons.join('\n'), /not serial/);
  const text = formatSecretCheck(report);
  assert.match(text, /^mandatory-none \(.*\): NOT servable: MANDATORY policy but no OCSP staple$/m);
  assert.match(text, /kubernetes:\/\/preferred-broken WITHHELD/);
  assert.match(text, /3 of 4 secrets not servable/);
});

test('--at: judged at another instant; an unreadable path fails the report', async () => {
  const dir = join(tmp.dir, 'time');
  mkdirSync(dir);
  writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', policy: 'MANDATORY', data: tlsData(pki, { 'tls.ocsp-staple': await makeStaple(pki.ca, pki.leaf.cert) }) }));
  assert.equal(checkSecrets([dir]).ok, true);
  const later = checkSecrets([dir], { at: new Date(Date.now() + 2 * HOUR) });
  assert.equal(later.ok, false);
  assert.equal(later.secrets[0]!.verdict, 'MANDATORY policy with an expired staple: the certificate is not used');
  assert.equal(later.secrets[0]!.sds[0]!.action, 'send-with-staple');
  const missing = checkSecrets([dir, join(tmp.dir, 'nope')]);
  assert.equal(missing.ok, false);
  assert.match(formatSecretCheck(missing), /error: .*nope: no such file or folder/);
  assert.equal(checkSecrets([join(tmp.dir, 'nope')]).secrets.length, 0);
});
