// HttpProxy behind the real listener (Gateway.start with a secrets folder): an HTTP/2 client with a client
// certificate on a MUTUAL server; the request goes upstream over MUTUAL origination with the credential the gateway
// resolves from its secrets, and carries the verified identity in x-forwarded-client-cert.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import http2 from 'node:http2';
import tls from 'node:tls';
import { stringify } from 'yaml';
import { Gateway } from '../../src/gateway/index.js';
import { tempDir } from '../helpers/test-ca.js';
import { manifestYaml } from '../sds/secret-fixtures.js';
import { h2, makePki, startHttpsUpstream, type EchoUpstream, type Pki } from './http-harness.js';

describe('HttpProxy behind the real listener', () => {
  let pki: Pki;
  let up: EchoUpstream;
  let gw: Gateway;
  let tmp: ReturnType<typeof tempDir>;

  before(async () => {
    pki = await makePki();
    up = await startHttpsUpstream(pki, 'mtls-upstream', true);
    tmp = tempDir('gw-http-');
    const secrets = join(tmp.dir, 'secrets');
    mkdirSync(secrets);
    writeFileSync(
      join(secrets, 'creds.yaml'),
      manifestYaml(
        { name: 'app-cred', data: { 'tls.crt': pki.gateway.chainPem, 'tls.key': pki.gateway.keyPem, 'ca.crt': pki.root.cert.pem } },
        { name: 'upstream-client', data: { 'tls.crt': pki.client.chainPem, 'tls.key': pki.client.keyPem, 'ca.crt': pki.root.cert.pem } },
      ),
    );
    const docs = [
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'Gateway',
        metadata: { name: 'edge' },
        spec: { servers: [{ port: { number: 8443, name: 'https', protocol: 'HTTPS' }, hosts: ['app.example.test'], tls: { mode: 'MUTUAL', credentialName: 'app-cred' } }] },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'app' },
        spec: { hosts: ['app.example.test'], gateways: ['edge'], http: [{ route: [{ destination: { host: 'backend' } }] }] },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'DestinationRule',
        metadata: { name: 'backend' },
        spec: { host: 'backend', trafficPolicy: { tls: { mode: 'MUTUAL', credentialName: 'upstream-client', sni: 'upstream.test', subjectAltNames: ['spiffe://cluster.local/ns/app/sa/backend'] } } },
      },
      { apiVersion: 'meshcert.dev/v1', kind: 'GatewayOptions', spec: { upstreams: { backend: `127.0.0.1:${up.port}` }, accessLog: { enabled: false } } },
    ];
    const file = tmp.file('gateway.yaml', docs.map((d) => stringify(d)).join('---\n'));
    gw = await Gateway.start({ file, credentials: { secrets: [secrets] }, defaultBind: '127.0.0.1', portOverrides: { 8443: 0 }, watch: false });
  });

  after(async () => {
    await gw?.close();
    await up?.close();
    tmp?.cleanup();
  });

  it('HTTP/2 + client certificate in, MUTUAL origination out, XFCC upstream', async () => {
    const port = gw.boundPorts[8443]!;
    const session = http2.connect(`https://app.example.test:${port}`, {
      createConnection: () =>
        tls.connect({ host: '127.0.0.1', port, servername: 'app.example.test', ca: pki.root.cert.pem, key: pki.client.keyPem, cert: pki.client.chainPem, ALPNProtocols: ['h2'] }),
    });
    session.on('error', () => undefined);
    try {
      const r = await h2(session, { ':method': 'POST', ':path': '/orders?id=7', ':authority': 'app.example.test', 'x-forwarded-client-cert': 'forged' }, '{"qty":1}');
      assert.equal(r.status, 200, r.body);
      const echo = JSON.parse(r.body);
      assert.equal(echo.upstream, 'mtls-upstream');
      assert.equal(echo.url, '/orders?id=7');
      assert.equal(echo.body, '{"qty":1}');
      const hash = createHash('sha256').update(pki.client.cert.der).digest('hex');
      assert.match(echo.headers['x-forwarded-client-cert'], new RegExp(`^Hash=${hash};Subject="[^"]*CN=cart[^"]*";URI=spiffe://cluster\\.local/ns/shop/sa/cart$`));
      assert.match(up.seen.at(-1)?.peerCert ?? '', /CN=cart/, 'the upstream saw the gateway present the upstream-client certificate');
    } finally {
      session.close();
    }
  });
});
