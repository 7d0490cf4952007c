// DESIGN.md's stapling table at handshake level: each policy × no staple / expired / broken / valid staple, seen by
// Node's client (requestOCSP), `openssl s_client -status` and `curl --cert-status`; PREFERRED with a bad staple
// fails whether or not the client asks; a staple that expires while the gateway runs is handled by the clock.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OcspResponse, type Certificate } from '../../src/pki/index.js';
import { TestCA, tempDir } from '../helpers/test-ca.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { run } from '../helpers/tools.js';
import { HOUR, makeStaple, manifestYaml, type ManifestSpec } from '../sds/secret-fixtures.js';
import { httpsGet, runAsync, sClient, serverPlan, startListener, type ListenerHarness } from './tls-harness.js';

const skipPeers = skipUnlessCi(
  (run('sh', ['-c', 'command -v openssl']).status !== 0 && 'openssl is not installed') || (run('sh', ['-c', 'command -v curl']).status !== 0 && 'curl is not installed'),
);

const POLICIES = ['OPTIONAL', 'PREFERRED', 'MANDATORY'] as const;
const STATES = ['none', 'expired', 'broken', 'valid'] as const;
type Policy = (typeof POLICIES)[number];
type State = (typeof STATES)[number];
/** What the handshake does, from DESIGN.md's table (MANDATORY none/broken: the config is refused, nothing served). */
const EXPECT: Record<Policy, Record<State, 'staple' | 'no-staple' | 'fail'>> = {
  OPTIONAL: { none: 'no-staple', expired: 'no-staple', broken: 'no-staple', valid: 'staple' },
  PREFERRED: { none: 'no-staple', expired: 'fail', broken: 'fail', valid: 'staple' },
  MANDATORY: { none: 'fail', expired: 'fail', broken: 'fail', valid: 'staple' },
};
const host = (p: Policy, s: State) => `${p.toLowerCase()}-${s}.example.test`;

let tmp: ReturnType<typeof tempDir>;
let root: TestCA;
let h: ListenerHarness;
let rootFile: string;
let issuing: TestCA;
const specs: ManifestSpec[] = [];
const leaves = new Map<string, Certificate>();

before(async () => {
  tmp = tempDir('gw-stapling-');
  root = await TestCA.root({ name: 'stapling root' });
  const ca = (issuing = await root.child({ name: 'stapling issuing CA' }));
  const stranger = await TestCA.root({ name: 'not the issuer' });
  rootFile = tmp.file('root.pem', root.cert.pem);
  const now = Date.now();
  const servers = [];
  for (const p of POLICIES) {
    for (const s of STATES) {
      const leaf = await ca.issueServer([host(p, s)]);
      const name = `${p.toLowerCase()}-${s}`;
      leaves.set(name, leaf.cert);
      let staple: Buffer | undefined;
      if (s === 'valid') staple = await makeStaple(ca, leaf.cert, { nextUpdate: new Date(now + HOUR) });
      if (s === 'expired') staple = await makeStaple(ca, leaf.cert, { thisUpdate: new Date(now - 3 * HOUR), nextUpdate: new Date(now - HOUR) });
      if (s === 'broken') staple = await makeStaple(ca, leaf.cert, { signer: stranger });
      specs.push({ name, policy: p, data: { 'tls.crt': leaf.chainPem, 'tls.key': leaf.keyPem, ...(staple ? { 'tls.ocsp-staple': staple } : {}) } });
      servers.push(serverPlan({ id: `edge/${name}`, hosts: [host(p, s)], mode: 'SIMPLE', credentialName: name }));
    }
  }
  writeFileSync(join(tmp.dir, 'secrets.yaml'), manifestYaml(...specs));
  h = await startListener(tmp.dir, servers);
});

after(async () => {
  await h?.close();
  tmp?.cleanup();
});

async function outcome(servername: string, requestOCSP: boolean): Promise<'staple' | 'no-staple' | 'fail'> {
  try {
    const r = await httpsGet(h.port, { servername, requestOCSP });
    return r.staple ? 'staple' : 'no-staple';
  } catch {
    return 'fail';
  }
}

describe('the stapling table at the handshake (Node client asking for a staple)', () => {
  for (const p of POLICIES) {
    for (const s of STATES) {
      test(`${p} × ${s} → ${EXPECT[p][s]}`, async () => {
        assert.equal(await outcome(host(p, s), true), EXPECT[p][s]);
      });
    }
  }

  test('PREFERRED with an expired or broken staple fails even when the client does not ask for a staple', async () => {
    assert.equal(await outcome(host('PREFERRED', 'expired'), false), 'fail');
    assert.equal(await outcome(host('PREFERRED', 'broken'), false), 'fail');
    assert.equal(await outcome(host('OPTIONAL', 'expired'), false), 'no-staple');
  });

  test('the staple served is the secret\'s own, byte for byte, and metrics count served and omitted staples', async () => {
    const r = await httpsGet(h.port, { servername: host('OPTIONAL', 'valid'), requestOCSP: true });
    const resp = OcspResponse.parse(r.staple!);
    assert.equal(resp.responseStatus, 'successful');
    const m = await h.metricsText();
    assert.match(m, /meshcert_gateway_ocsp_staples_total\{result="served"\} [1-9]/);
    assert.match(m, /meshcert_gateway_ocsp_staples_total\{result="omitted"\} [1-9]/);
    assert.match(m, /reason="staple_policy"\} [1-9]/);
  });
});

describe('openssl s_client -status and curl --cert-status', { skip: skipPeers }, () => {
  test('openssl prints the staple of a valid one and "no response sent" for OPTIONAL without a valid staple', async () => {
    const v = await sClient(h.port, ['-servername', host('MANDATORY', 'valid'), '-status', '-CAfile', rootFile]);
    assert.match(v.stdout, /OCSP Response Status: successful/);
    assert.match(v.stdout, /Cert Status: good/);
    const n = await sClient(h.port, ['-servername', host('OPTIONAL', 'expired'), '-status', '-CAfile', rootFile]);
    assert.match(n.stdout, /OCSP response: no response sent/);
    const f = await sClient(h.port, ['-servername', host('PREFERRED', 'broken'), '-status', '-CAfile', rootFile]);
    assert.notEqual(f.status, 0);
    assert.match(f.stderr + f.stdout, /alert handshake failure/);
  });

  test('curl --cert-status accepts a valid staple and fails (91) where none is served', async () => {
    const curl = (hn: string) =>
      runAsync('curl', ['-sS', '--cert-status', '--cacert', rootFile, '--resolve', `${hn}:${h.port}:127.0.0.1`, `https://${hn}:${h.port}/`]);
    const ok = await curl(host('PREFERRED', 'valid'));
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /server=preferred-valid\.example\.test/);
    const none = await curl(host('OPTIONAL', 'broken'));
    assert.equal(none.status, 91, none.stderr);
  });
});

describe('a staple that expires while the gateway runs (the clock, no restart, no file event)', () => {
  test('OPTIONAL stops stapling it; PREFERRED and MANDATORY stop using the certificate', async () => {
    assert.equal(await outcome(host('OPTIONAL', 'valid'), true), 'staple');
    assert.equal(await outcome(host('PREFERRED', 'valid'), true), 'staple');
    h.clock.advance(2 * HOUR);
    try {
      assert.equal(await outcome(host('OPTIONAL', 'valid'), true), 'no-staple');
      assert.equal(await outcome(host('PREFERRED', 'valid'), true), 'fail');
      assert.equal(await outcome(host('MANDATORY', 'valid'), false), 'fail');
      // A fresh staple written to the folder is used for the next handshake.
      const now = h.clock.now().getTime();
      const spec = specs.find((x) => x.name === 'preferred-valid')!;
      spec.data = { ...spec.data, 'tls.ocsp-staple': await makeStaple(issuing, leaves.get('preferred-valid')!, { thisUpdate: new Date(now - HOUR), nextUpdate: new Date(now + HOUR) }) };
      writeFileSync(join(tmp.dir, 'secrets.yaml'), manifestYaml(...specs));
      h.source.reload();
      assert.equal(await outcome(host('PREFERRED', 'valid'), true), 'staple');
    } finally {
      h.clock.advance(-2 * HOUR);
    }
  });
});
