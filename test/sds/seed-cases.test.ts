// The test plan of the seeds' OCSP stapling design (000_9ef911ebd9c46280.txt), at the SDS level, on the wire as
// DESIGN.md's "Stapling policy" says: what Envoy receives over a real gRPC stream for each case, and what is
// reported when a secret is withheld. (The handshake half of each case belongs to the gateway.)
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { checkSecrets } from '../../src/secrets/index.js';
import { tempDir } from '../helpers/test-ca.js';
import { RawSdsStream, secretsOf } from './raw-stream.js';
import { startHarness, type Harness } from './sds-harness.js';
import { HOUR, gatewayPki, makeStaple, manifestYaml, otherLeaf, tlsData, waitUntil, writeAtomic, type GatewayPki } from './secret-fixtures.js';

const tmp = tempDir('meshcert-seed-cases-');
const secrets = join(tmp.dir, 'secrets');
let h: Harness;
let pki: GatewayPki;
let valid: Buffer;
let expired: Buffer;
let broken: Buffer;
const raws: RawSdsStream[] = [];

before(async () => {
  mkdirSync(secrets);
  pki = await gatewayPki({ dnsName: 'shop.example.com' });
  valid = await makeStaple(pki.ca, pki.leaf.cert);
  expired = await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(Date.now() - 3 * HOUR), nextUpdate: new Date(Date.now() - HOUR) });
  // A staple for another certificate of the same CA: it parses and is signed, but it is not this certificate's.
  broken = await makeStaple(pki.ca, (await otherLeaf(pki)).cert);
  const cases = [
    { name: 'case1-mandatory-valid', policy: 'MANDATORY', staple: valid },
    { name: 'case2-mandatory-none', policy: 'MANDATORY' },
    { name: 'case3-preferred-broken', policy: 'PREFERRED', staple: broken },
    { name: 'case3-preferred-expired', policy: 'PREFERRED', staple: expired },
    { name: 'case4-preferred-none', policy: 'PREFERRED' },
    { name: 'case5-optional-none', policy: 'OPTIONAL' },
    { name: 'case6-optional-broken', policy: 'OPTIONAL', staple: broken },
    { name: 'case7-optional-valid', policy: 'OPTIONAL', staple: valid },
    { name: 'case7-no-annotation-valid', staple: valid },
  ];
  writeAtomic(
    join(secrets, 'gateway-secrets.yaml'),
    manifestYaml(...cases.map((c) => ({ name: c.name, ...(c.policy ? { policy: c.policy } : {}), data: tlsData(pki, c.staple ? { 'tls.ocsp-staple': c.staple } : {}) }))),
  );
  h = await startHarness(secrets, tmp.dir);
});

after(async () => {
  for (const r of raws) r.close();
  await h.close();
  tmp.cleanup();
});

/** What Envoy gets for a name on a fresh stream: the Secret, or null when nothing comes within `ms`. */
async function envoyGets(name: string, ms = 600): Promise<{ staple: Buffer | null; chain: string } | null> {
  const r = new RawSdsStream(`unix:${h.socket}`);
  raws.push(r);
  r.send({ node: { id: 'router~seed' }, resourceNames: [name] });
  try {
    const resp = await r.next(ms);
    const s = secretsOf(resp)[0]!;
    assert.equal(s.name, name);
    r.ack(resp, [name]);
    const st = s.tlsCertificate!.ocspStaple?.inlineBytes;
    return { staple: st ? Buffer.from(st) : null, chain: Buffer.from(s.tlsCertificate!.certificateChain!.inlineBytes!).toString() };
  } catch (err) {
    if (/no response within/.test(String(err))) return null;
    throw err;
  }
}

function checked(name: string) {
  return checkSecrets([secrets]).secrets.find((s) => s.name === name)!;
}

test('1. an OCSP staple and the stapling policy pushed', async () => {
  const got = await envoyGets('kubernetes://case1-mandatory-valid');
  assert.ok(got, 'sent');
  assert.ok(got.staple?.equals(valid), 'the staple is in tls_certificate.ocsp_staple');
  assert.equal(got.chain, pki.leaf.chainPem);
  // The policy for Envoy's DownstreamTlsContext (ocsp_staple_policy) goes with it.
  const c = checked('case1-mandatory-valid');
  assert.equal(c.policy!.envoy, 'MUST_STAPLE');
  assert.equal(c.gateway!.action, 'staple');
});

test('2. a certificate with the MANDATORY policy and no staple: withheld and reported', async () => {
  assert.equal(await envoyGets('kubernetes://case2-mandatory-none'), null, 'nothing goes to Envoy');
  const c = checked('case2-mandatory-none');
  assert.equal(c.servable, false);
  assert.equal(c.verdict, 'MANDATORY policy but no OCSP staple');
  const e = h.source.get('case2-mandatory-none')!;
  assert.equal(e.served, null);
  assert.match(e.rejected!.problems[0]!.message, /MANDATORY policy but no OCSP staple/);
  assert.ok(h.logs.some((l) => l.secret === 'case2-mandatory-none' && l.level === 40), 'logged');
  assert.match(await h.metrics(), /meshcert_secret_served\{secret="case2-mandatory-none"\} 0/);
  assert.match(await h.metrics(), /meshcert_sds_withheld_resources\{resource="kubernetes:\/\/case2-mandatory-none"\} 1/);
});

test('3. PREFERRED with a broken staple: withheld; with an expired staple: sent as it is', async () => {
  assert.equal(await envoyGets('kubernetes://case3-preferred-broken'), null, 'the broken staple is withheld');
  const b = checked('case3-preferred-broken');
  assert.equal(b.servable, false);
  assert.equal(b.sds[0]!.action, 'withhold');
  assert.match(b.staple!.reasons.join('\n'), /not serial/);
  assert.match(await h.metrics(), /meshcert_secret_sds_withheld\{secret="case3-preferred-broken"\} 1/);

  const got = await envoyGets('kubernetes://case3-preferred-expired');
  assert.ok(got, 'sent');
  assert.ok(got.staple?.equals(expired), 'the expired staple goes as it is: STRICT_STAPLING then refuses the certificate');
  const e = checked('case3-preferred-expired');
  assert.equal(e.policy!.envoy, 'STRICT_STAPLING');
  assert.equal(e.gateway!.action, 'fail-handshake');
});

test('4. PREFERRED with no staple: served', async () => {
  const got = await envoyGets('kubernetes://case4-preferred-none');
  assert.ok(got);
  assert.equal(got.staple, null);
  assert.equal(checked('case4-preferred-none').servable, true);
});

test('5. OPTIONAL with no staple: served', async () => {
  const got = await envoyGets('kubernetes://case5-optional-none');
  assert.ok(got);
  assert.equal(got.staple, null);
  assert.equal(checked('case5-optional-none').servable, true);
});

test('6. OPTIONAL with a broken staple: served without it', async () => {
  const got = await envoyGets('kubernetes://case6-optional-broken');
  assert.ok(got);
  assert.equal(got.staple, null, 'the broken staple is left out');
  const c = checked('case6-optional-broken');
  assert.equal(c.servable, true);
  assert.equal(c.gateway!.action, 'serve-without-staple');
});

test('7. OPTIONAL with a valid staple: served with it (also with no annotation, as Istio 1.17+)', async () => {
  for (const name of ['case7-optional-valid', 'case7-no-annotation-valid']) {
    const got = await envoyGets(`kubernetes://${name}`);
    assert.ok(got, name);
    assert.ok(got.staple?.equals(valid), `${name}: stapled`);
    assert.equal(checked(name).policy!.envoy, 'LENIENT_STAPLING');
  }
});

test('a MANDATORY secret whose new version drops the staple: Envoy keeps the last version it accepted', async () => {
  writeAtomic(join(secrets, 'later.yaml'), manifestYaml({ name: 'later', policy: 'MANDATORY', data: tlsData(pki, { 'tls.ocsp-staple': valid }) }));
  const r = new RawSdsStream(`unix:${h.socket}`);
  raws.push(r);
  await waitUntil(() => h.source.get('later')?.served != null, 2000, 'the secret');
  r.send({ resourceNames: ['kubernetes://later'] });
  const first = await r.next();
  r.ack(first, ['kubernetes://later']);
  writeAtomic(join(secrets, 'later.yaml'), manifestYaml({ name: 'later', policy: 'MANDATORY', data: tlsData(pki) }));
  await waitUntil(() => h.source.get('later')!.rejected !== null, 2000, 'the refusal');
  await r.none(500);
  assert.ok(h.source.get('later')!.served!.secret.tls!.staple!.equals(valid), 'the last good version stays served');
});
