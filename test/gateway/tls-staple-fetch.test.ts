// The gateway fetches the OCSP staples of its secrets-folder certificates itself (as `meshcert serve` does for
// SDS): a PREFERRED certificate shipped without a staple is not served until a staple from its responder (a real
// `openssl ocsp`) arrives, then it is, stapled.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { Gateway } from '../../src/gateway/index.js';
import { OcspResponse } from '../../src/pki/index.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { manifestYaml, writeAtomic } from '../sds/secret-fixtures.js';
import { OpensslResponder, indexLine } from '../secrets/openssl-responder.js';

const skip = skipUnlessCi(spawnSync('openssl', ['version']).status === 0 ? null : 'openssl is not installed');

describe('gateway: OCSP staples fetched for the secrets folder', { skip }, () => {
  const tmp = tempDir('meshcert-gw-staples-');
  let root: TestCA;
  let leaf: IssuedLeaf;
  let responder: OpensslResponder;
  let gw: Gateway;

  before(async () => {
    if (skip) return;
    root = await TestCA.root({ name: 'staple fetch root' });
    const ca = await root.child({ name: 'staple fetch issuing CA' });
    const index = join(tmp.dir, 'index.txt');
    writeAtomic(index, '');
    responder = await OpensslResponder.create({ dir: tmp.dir, index, caPem: tmp.file('ca.pem', ca.cert.pem), caKey: tmp.file('ca.key', ca.keyPem), nmin: 10 });
    leaf = await ca.issueServer(['app.example.test'], { ocspUrls: [responder.url] });
    writeAtomic(index, indexLine(leaf.cert));
    await responder.start();
    const secrets = join(tmp.dir, 'secrets');
    mkdirSync(secrets);
    writeFileSync(join(secrets, 'cred.yaml'), manifestYaml({ name: 'app-cred', policy: 'PREFERRED', data: { 'tls.crt': leaf.chainPem, 'tls.key': leaf.keyPem } }));
    const file = tmp.file(
      'gateway.yaml',
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [app.example.test]
    tls: { mode: SIMPLE, credentialName: app-cred }
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec: { accessLog: { enabled: false } }
`,
    );
    gw = await Gateway.start({ file, credentials: { secrets: [secrets] }, defaultBind: '127.0.0.1', portOverrides: { 8443: 0 }, watch: false, fetchStaples: 'wanted', dataDir: join(tmp.dir, 'data') });
  });

  after(async () => {
    await gw?.close();
    await responder?.close();
    tmp.cleanup();
  });

  function handshake(): Promise<{ ok: boolean; staple: Buffer | null }> {
    return new Promise((resolve) => {
      let staple: Buffer | null = null;
      const s = tls.connect({ host: '127.0.0.1', port: gw.boundPorts[8443]!, servername: 'app.example.test', ca: root.cert.pem, ...({ requestOCSP: true } as tls.ConnectionOptions) }, () => {
        s.destroy();
        resolve({ ok: true, staple });
      });
      s.on('OCSPResponse', (r: Buffer) => (staple = r));
      s.on('error', () => resolve({ ok: false, staple: null }));
    });
  }

  it('serves the certificate with the fetched staple once it arrives', async () => {
    let r = await handshake();
    for (let i = 0; i < 100 && !(r.ok && r.staple); i++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await handshake();
    }
    assert.ok(r.ok, 'the handshake succeeds once the staple is there');
    assert.ok(r.staple && r.staple.length > 0, 'a staple was sent');
    const parsed = OcspResponse.parse(r.staple!);
    assert.equal(parsed.responses[0]?.status, 'good');
    assert.equal(parsed.responses[0]?.certId.serial, leaf.cert.serial);
    const metrics = await gw.metrics.registry.metrics();
    assert.match(metrics, /meshcert_staple_fetches_total\{[^}]*result="good"[^}]*\} [1-9]/);
  });
});
