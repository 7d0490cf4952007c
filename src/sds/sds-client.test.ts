import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { tempDir } from '../../test/helpers/test-ca.js';
import { gatewayPki, otherLeaf, waitUntil, type GatewayPki } from '../../test/sds/secret-fixtures.js';
import { SdsClient, SdsServer, StaticSecretProvider, type ClientSecret, type DisconnectEvent, type NackEvent, type SecretPayload } from './index.js';

const tmp = tempDir('meshcert-sds-client-');
const socket = join(tmp.dir, 'sds.sock');
let pki: GatewayPki;
let pki2: GatewayPki;
const provider = new StaticSecretProvider();
let server: SdsServer | null = null;
const clients: SdsClient[] = [];

const tls = (p: GatewayPki): SecretPayload => ({ kind: 'tlsCertificate', certificateChain: p.leaf.chainPem, privateKey: p.leaf.keyPem });

function client(names: string[], options: { initialMs?: number; maxMs?: number } = {}): SdsClient {
  const c = new SdsClient({ target: `unix:${socket}`, names, node: { id: 'test~client' }, backoff: { initialMs: options.initialMs ?? 50, maxMs: options.maxMs ?? 400 } });
  clients.push(c);
  return c.start();
}

before(async () => {
  pki = await gatewayPki();
  pki2 = await gatewayPki({ dnsName: 'two.example.com' });
  provider.set('kubernetes://gw', tls(pki));
  provider.set('kubernetes://gw-cacert', { kind: 'validationContext', trustedCa: pki.root.cert.pem });
  server = await SdsServer.start({ provider, uds: socket });
});

after(async () => {
  for (const c of clients) c.close();
  await server?.close();
  tmp.cleanup();
});

test('subscribes, ACKs, keeps the secrets, and follows pushes', async () => {
  const c = client(['kubernetes://gw', 'kubernetes://gw-cacert']);
  const gw = await c.waitFor('kubernetes://gw');
  assert.equal(gw.certificates![0]!.serial, pki.leaf.cert.serial);
  const ca = await c.waitFor('kubernetes://gw-cacert');
  assert.equal(ca.caCertificates![0]!.fingerprint256, pki.root.cert.fingerprint256);
  await waitUntil(() => c.version !== '' && c.version === ca.version, 2000, 'the ACKed version');
  provider.set('kubernetes://gw', tls(pki2));
  const next = await c.waitFor('kubernetes://gw', (s) => s.certificates![0]!.serial === pki2.leaf.cert.serial);
  assert.notEqual(next.version, gw.version);
  provider.set('kubernetes://gw', tls(pki));
  await c.waitFor('kubernetes://gw', (s) => s.certificates![0]!.serial === pki.leaf.cert.serial);
});

test('NACKs an invalid secret with the reason and keeps the last good one; the server does not resend it', async () => {
  const c = client(['kubernetes://gw']);
  await c.waitFor('kubernetes://gw');
  const held = c.version;
  const nacks: NackEvent[] = [];
  c.on('nack', (e: NackEvent) => nacks.push(e));
  const wrong = await otherLeaf(pki);
  // A key that is not the certificate's: Envoy would refuse it too.
  provider.set('kubernetes://gw', { kind: 'tlsCertificate', certificateChain: pki.leaf.chainPem, privateKey: wrong.keyPem });
  await waitUntil(() => nacks.length === 1, 2000, 'the NACK');
  assert.match(nacks[0]!.errors[0]!, /the private key does not belong to the certificate/);
  assert.equal(c.version, held, 'a NACK keeps the previous version');
  assert.equal(c.get('kubernetes://gw')!.certificates![0]!.serial, pki.leaf.cert.serial, 'and the last good secret');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(nacks.length, 1, 'the rejected version is not sent again');
  provider.set('kubernetes://gw', tls(pki2));
  await c.waitFor('kubernetes://gw', (s) => s.certificates![0]!.serial === pki2.leaf.cert.serial);
  provider.set('kubernetes://gw', tls(pki));
});

test('changes its subscription; FetchSecrets answers once', async () => {
  const c = client(['kubernetes://gw']);
  await c.waitFor('kubernetes://gw');
  c.setNames(['kubernetes://gw-cacert']);
  await c.waitFor('kubernetes://gw-cacert');
  assert.equal(c.get('kubernetes://gw'), undefined, 'a dropped name is forgotten');
  const fetched = await c.fetch(['kubernetes://gw', 'kubernetes://gw-cacert', 'kubernetes://none']);
  assert.deepEqual(
    fetched.secrets.map((s) => s.name).sort(),
    ['kubernetes://gw', 'kubernetes://gw-cacert'],
  );
  assert.match(fetched.version, /^[0-9a-f]{16}$/);
});

test('reconnects with capped backoff after the server goes away, and gets later changes', async () => {
  const c = client(['kubernetes://gw'], { initialMs: 50, maxMs: 200 });
  await c.waitFor('kubernetes://gw');
  const gone: DisconnectEvent[] = [];
  c.on('disconnected', (e: DisconnectEvent) => gone.push(e));
  server!.kill();
  await waitUntil(() => gone.length >= 3, 5000, 'several reconnection attempts');
  assert.equal(c.connected, false);
  assert.equal(c.get('kubernetes://gw')!.certificates![0]!.serial, pki.leaf.cert.serial, 'the last good secret stays while disconnected');
  for (const e of gone) assert.ok(e.retryInMs <= 200 * 1.2 + 1, `backoff capped: ${e.retryInMs}`);
  server = await SdsServer.start({ provider, uds: socket });
  await waitUntil(() => c.connected || server!.streams > 0, 3000, 'the reconnection');
  provider.set('kubernetes://gw', tls(pki2));
  const s: ClientSecret = await c.waitFor('kubernetes://gw', (x) => x.certificates![0]!.serial === pki2.leaf.cert.serial, 3000);
  assert.ok(s);
});
