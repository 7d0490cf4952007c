// The whole gateway in-process (Gateway.start with the real HttpProxy): HTTPS to a Node upstream, PASSTHROUGH by
// SNI, certificate hot reload, file reload without dropping connections (and a broken file kept out), the admin
// listener (/healthz, /metrics, /config_dump).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createServer as createHttpServer, request as httpRequest, type Server as HttpServer } from 'node:http';
import { createServer as createTlsServer, connect as tlsConnect, type Server as TlsServer } from 'node:tls';
import { Agent, request as httpsRequest } from 'node:https';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Gateway } from '../../src/gateway/index.js';
import { TestCA, tempDir } from '../helpers/test-ca.js';
import { manifestYaml, makeStaple, waitUntil, writeAtomic, type GatewayPki } from '../sds/secret-fixtures.js';

let tmp: ReturnType<typeof tempDir>;
let root: TestCA;
let ca: TestCA;
let upstream: HttpServer;
let upstreamPort: number;
let passUpstream: TlsServer;
let passPort: number;
let gw: Gateway;
let gwFile: string;
let secretsFile: string;
let pki: GatewayPki;
const seen: Array<Record<string, string | string[] | undefined>> = [];

function gatewayFile(opts: { minVersion?: string; extraHost?: string; broken?: boolean } = {}): string {
  const docs: unknown[] = [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge' },
      spec: {
        servers: [
          {
            port: { number: 8443, name: 'https', protocol: 'HTTPS' },
            hosts: ['app.example.test', ...(opts.extraHost ? [opts.extraHost] : [])],
            tls: { mode: 'SIMPLE', credentialName: 'app-cred', ...(opts.minVersion ? { minProtocolVersion: opts.minVersion } : {}) },
          },
          { port: { number: 9443, name: 'tls', protocol: 'TLS' }, hosts: ['pass.example.test'], tls: { mode: 'PASSTHROUGH' } },
          { port: { number: 8080, name: 'http', protocol: 'HTTP' }, hosts: ['app.example.test'] },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'app' },
      spec: { hosts: ['app.example.test', ...(opts.extraHost ? [opts.extraHost] : [])], gateways: ['edge'], http: [{ route: [{ destination: { host: 'app-backend', port: { number: 8080 } } }] }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'pass' },
      spec: { hosts: ['pass.example.test'], gateways: ['edge'], tls: [{ match: [{ sniHosts: ['pass.example.test'] }], route: [{ destination: { host: 'pass-backend', port: { number: 443 } } }] }] },
    },
    {
      apiVersion: 'meshcert.dev/v1',
      kind: 'GatewayOptions',
      spec: { upstreams: { 'app-backend': `127.0.0.1:${upstreamPort}`, 'pass-backend': `127.0.0.1:${passPort}` }, ...(opts.broken ? { noSuchField: true } : {}) },
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

async function leafFor(host: string) {
  return ca.issueServer([host]);
}

before(async () => {
  tmp = tempDir('gw-process-');
  root = await TestCA.root({ name: 'gateway e2e root' });
  ca = await root.child({ name: 'gateway e2e CA' });
  const leaf = await leafFor('app.example.test');
  pki = { root, ca, leaf };
  upstream = createHttpServer((req, res) => {
    seen.push({ ...req.headers });
    res.end(`upstream saw ${req.method} ${req.url} host=${req.headers.host}\n`);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as { port: number }).port;
  const passLeaf = await leafFor('pass.example.test');
  passUpstream = createTlsServer({ key: passLeaf.keyPem, cert: passLeaf.chainPem }, (s) => s.end('hello from the passthrough upstream\n'));
  await new Promise<void>((r) => passUpstream.listen(0, '127.0.0.1', r));
  passPort = (passUpstream.address() as { port: number }).port;
  const secretsDir = join(tmp.dir, 'secrets');
  (await import('node:fs')).mkdirSync(secretsDir);
  secretsFile = join(secretsDir, 'app.yaml');
  writeFileSync(secretsFile, manifestYaml({ name: 'app-cred', data: { 'tls.crt': leaf.chainPem, 'tls.key': leaf.keyPem, 'tls.ocsp-staple': await makeStaple(ca, leaf.cert) } }));
  gwFile = tmp.file('gateway.yaml', gatewayFile());
  gw = await Gateway.start({
    file: gwFile,
    credentials: { secrets: [secretsDir] },
    defaultBind: '127.0.0.1',
    portOverrides: { 8443: 0, 9443: 0, 8080: 0 },
    adminListen: { host: '127.0.0.1', port: 0 },
    pollIntervalMs: 100,
  });
});

after(async () => {
  await gw?.close();
  upstream?.close();
  passUpstream?.close();
  tmp?.cleanup();
});

function get(host: string, agent?: Agent): Promise<{ status: number; body: string; serial: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port: gw.boundPorts[8443], servername: host, headers: { host }, path: '/hello', ca: root.cert.pem, ...(agent ? { agent } : { agent: false }) },
      (res) => {
        let body = '';
        const cert = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate?.();
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body, serial: cert?.serialNumber ?? '' });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function admin(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const a = gw.adminAddress!;
    httpRequest({ host: a.host, port: a.port, path }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

const hexSerial = (s: string) => s.toLowerCase().replace(/^0+/, '');

describe('HTTPS through the gateway and the HTTP proxy', () => {
  test('a request reaches the Node upstream, verified against the secret\'s CA', async () => {
    const r = await get('app.example.test');
    assert.equal(r.status, 200);
    assert.match(r.body, /upstream saw GET \/hello host=app\.example\.test/);
    assert.equal(hexSerial(r.serial), hexSerial(pki.leaf.cert.serial));
  });
});

describe('plain HTTP port', () => {
  test('the socket goes to the proxy without TLS', async () => {
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port: gw.boundPorts[8080], path: '/plain', headers: { host: 'app.example.test' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
        .on('error', reject)
        .end();
    });
    assert.equal(r.status, 200);
    assert.match(r.body, /upstream saw GET \/plain/);
  });
});

describe('PASSTHROUGH', () => {
  test('the TLS session is with the upstream chosen by SNI (its certificate, its bytes)', async () => {
    const { body, subject } = await new Promise<{ body: string; subject: string }>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: gw.boundPorts[9443]!, servername: 'pass.example.test', ca: root.cert.pem }, () => {
        const subject = s.getPeerX509Certificate()?.subject ?? '';
        let body = '';
        s.on('data', (d: Buffer) => (body += d.toString()));
        s.on('end', () => resolve({ body, subject }));
      });
      s.on('error', reject);
    });
    assert.match(subject, /CN=pass\.example\.test/);
    assert.equal(body, 'hello from the passthrough upstream\n');
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: gw.boundPorts[9443]!, servername: 'nobody.example.test', rejectUnauthorized: false }, () => resolve(s));
        s.on('error', reject);
      }),
    );
  });
});

describe('admin listener', () => {
  test('/healthz, /metrics and /config_dump (serials, expiry, staple state)', async () => {
    const h = await admin('/healthz');
    assert.equal(h.status, 200);
    const m = await admin('/metrics');
    assert.match(m.body, /meshcert_gateway_handshakes_total\{port="8443",result="success"\} [1-9]/);
    assert.match(m.body, new RegExp(`meshcert_gateway_certificate_expiry_timestamp_seconds\\{credential="app-cred",serial="${pki.leaf.cert.serial}"\\} ${Math.floor(pki.leaf.cert.notAfter.getTime() / 1000)}`));
    assert.match(m.body, /meshcert_gateway_passthrough_total\{port="9443",result="connected"\} 1/);
    const d = JSON.parse((await admin('/config_dump')).body) as { certificates: Array<{ name: string; serial: string; notAfter: string; staple: { state: string; action: string } }>; listeners: unknown[] };
    const c = d.certificates.find((x) => x.name === 'app-cred')!;
    assert.equal(c.serial, pki.leaf.cert.serial);
    assert.equal(c.notAfter, pki.leaf.cert.notAfter.toISOString());
    assert.deepEqual([c.staple.state, c.staple.action], ['valid', 'staple']);
    assert.equal(d.listeners.length, 3);
  });
});

describe('hot reload', () => {
  test('a new certificate in the secrets folder is used by the next handshake', async () => {
    const next = await ca.issueServer(['app.example.test', 'new.example.test']);
    writeAtomic(secretsFile, manifestYaml({ name: 'app-cred', data: { 'tls.crt': next.chainPem, 'tls.key': next.keyPem } }));
    await waitUntil(() => hexSerial(gw.store.serving('app-cred')?.chain[0]?.serial ?? '') === hexSerial(next.cert.serial), 5000, 'the new certificate');
    const r = await get('app.example.test');
    assert.equal(hexSerial(r.serial), hexSerial(next.cert.serial));
    pki = { ...pki, leaf: next };
  });

  test('a changed gateway file applies without dropping an established connection; a broken one is kept out', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = await get('app.example.test', agent);
    assert.equal(first.status, 200);
    // New host and TLS 1.3 minimum.
    writeAtomic(gwFile, gatewayFile({ minVersion: 'TLSV1_3', extraHost: 'new.example.test' }));
    await waitUntil(() => gw.config.gateways[0]!.spec.servers[0]!.hosts.includes('new.example.test'), 5000, 'the reload');
    const again = await get('app.example.test', agent);
    assert.equal(again.status, 200, 'the kept-alive connection still works');
    const fresh = await get('new.example.test');
    assert.match(fresh.body, /host=new\.example\.test/);
    // A broken file: the running config stays, the reason is visible.
    writeAtomic(gwFile, gatewayFile({ minVersion: 'TLSV1_3', extraHost: 'new.example.test', broken: true }));
    await waitUntil(() => /noSuchField/.test(JSON.stringify(gw.configDump().lastReload ?? {})), 5000, 'the refusal');
    assert.equal((await get('new.example.test')).status, 200);
    assert.match((await admin('/metrics')).body, /meshcert_gateway_config_reloads_total\{result="rejected"\} 1/);
    agent.destroy();
  });
});
