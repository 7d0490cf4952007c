import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { skipUnlessCi } from '../helpers/peers.js';
import { execFile } from 'node:child_process';
import { run } from '../helpers/tools.js';
import { tempDir } from '../helpers/test-ca.js';
import { deadPort, makePki, startHttpUpstream, startStandIn, type EchoUpstream, type Pki, type StandIn, edgeGateway, edgeVirtualService } from './http-harness.js';

// gRPC end to end through HttpProxy with @grpc/grpc-js on both sides (HTTP/2 to the gateway over TLS, HTTP/2 to the
// upstream in cleartext and with TLS origination): messages, response metadata, trailers and statuses pass through;
// an unreachable upstream is grpc-status 14 UNAVAILABLE with a message, as Envoy answers. curl --http2 as a client.

function runAsync(cmd: string, args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

const raw = (b: Buffer) => b;
const methods: grpc.ServiceDefinition = {
  unary: { path: '/test.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  fail: { path: '/test.Echo/Fail', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  stream: { path: '/test.Echo/Stream', requestStream: false, responseStream: true, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
};
const EchoClient = grpc.makeGenericClientConstructor(methods, 'Echo');

async function startGrpc(creds: grpc.ServerCredentials): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(methods, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const md = new grpc.Metadata();
      md.set('x-seen-xfp', String(call.metadata.get('x-forwarded-proto')[0] ?? ''));
      call.sendMetadata(md);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'from-upstream');
      cb(null, Buffer.from(call.request.toString().split('').reverse().join('')), trailer);
    },
    fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.INVALID_ARGUMENT, details: 'bad input' }),
    stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < 3; i++) call.write(Buffer.from(`part${i}`));
      call.end();
    },
  });
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? rej(e) : res(p))));
  return { server, port };
}

describe('HttpProxy gRPC', () => {
  let pki: Pki;
  let plainGrpc: { server: grpc.Server; port: number };
  let tlsGrpc: { server: grpc.Server; port: number };
  let web: EchoUpstream;
  let gw: StandIn;
  let client: grpc.Client;
  const call = (c: grpc.Client, method: keyof typeof methods, req: string): Promise<{ res?: Buffer; err?: grpc.ServiceError; md?: grpc.Metadata; trailers?: grpc.Metadata }> =>
    new Promise((resolve) => {
      let md: grpc.Metadata | undefined;
      let trailers: grpc.Metadata | undefined;
      const fn = (c as unknown as Record<string, (...a: unknown[]) => grpc.ClientUnaryCall>)[method]!.bind(c);
      const cl = fn(Buffer.from(req), (err: grpc.ServiceError | null, res?: Buffer) => setImmediate(() => resolve({ ...(err ? { err } : {}), ...(res ? { res } : {}), md, trailers })));
      cl.on('metadata', (m: grpc.Metadata) => (md = m));
      cl.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
    });

  before(async () => {
    pki = await makePki();
    plainGrpc = await startGrpc(grpc.ServerCredentials.createInsecure());
    tlsGrpc = await startGrpc(grpc.ServerCredentials.createSsl(Buffer.from(pki.root.cert.pem), [{ private_key: Buffer.from(pki.upstream.keyPem), cert_chain: Buffer.from(pki.upstream.chainPem) }], false));
    web = await startHttpUpstream('web');
    const dead = await deadPort();
    const yaml = `${edgeGateway('SIMPLE', ['app.example.test', 'tls.example.test', 'dead.example.test'])}${edgeVirtualService('', ['app.example.test'], 'grpc')}
  - match: [{ uri: { prefix: /test.Echo/ } }]
    route: [{ destination: { host: grpc-plain } }]
  - route: [{ destination: { host: web } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: grpc-tls }
spec:
  hosts: [tls.example.test]
  gateways: [edge]
  http:
  - route: [{ destination: { host: grpc-tls } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: grpc-dead }
spec:
  hosts: [dead.example.test]
  gateways: [edge]
  http:
  - route: [{ destination: { host: grpc-dead } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: grpc-tls }
spec:
  host: grpc-tls
  trafficPolicy:
    tls: { mode: SIMPLE, credentialName: upstream-ca, sni: upstream.test, subjectAltNames: ["spiffe://cluster.local/ns/app/sa/backend"] }
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams:
    grpc-plain: 127.0.0.1:${plainGrpc.port}
    grpc-tls: 127.0.0.1:${tlsGrpc.port}
    grpc-dead: 127.0.0.1:${dead}
    web: 127.0.0.1:${web.port}
`;
    gw = await startStandIn(pki, yaml, { proxy: { credentials: (n) => (n === 'upstream-ca' ? { ca: pki.root.cert.pem } : undefined) } });
    client = new EchoClient(`127.0.0.1:${gw.port}`, grpc.credentials.createSsl(Buffer.from(pki.root.cert.pem)), { 'grpc.ssl_target_name_override': 'app.example.test', 'grpc.default_authority': 'app.example.test' });
  });

  after(async () => {
    client?.close();
    await gw?.close();
    plainGrpc?.server.forceShutdown();
    tlsGrpc?.server.forceShutdown();
    await web?.close();
  });

  it('passes a unary call with response metadata and trailers through (HTTP/2 both sides)', async () => {
    const r = await call(client, 'unary', 'hello');
    assert.equal(r.err, undefined);
    assert.equal(r.res?.toString(), 'olleh');
    assert.equal(r.md?.get('x-seen-xfp')[0], 'https');
    assert.equal(r.trailers?.get('x-trailer')[0], 'from-upstream');
    const log = gw.logs.find((l) => l.path === '/test.Echo/Unary');
    assert.equal(log?.grpcStatus, '0');
  });

  it('passes an upstream gRPC error status through unchanged', async () => {
    const r = await call(client, 'fail', 'x');
    assert.equal(r.err?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(r.err?.details, 'bad input');
  });

  it('streams server messages through', async () => {
    const parts: string[] = [];
    const s = (client as unknown as { stream(req: Buffer): grpc.ClientReadableStream<Buffer> }).stream(Buffer.from('go'));
    s.on('data', (d: Buffer) => parts.push(d.toString()));
    await new Promise<void>((res, rej) => {
      s.on('end', () => res());
      s.on('error', rej);
    });
    assert.deepEqual(parts, ['part0', 'part1', 'part2']);
  });

  it('originates TLS over HTTP/2 to a gRPC upstream, checking its SPIFFE SAN', async () => {
    const c = new EchoClient(`127.0.0.1:${gw.port}`, grpc.credentials.createSsl(Buffer.from(pki.root.cert.pem)), { 'grpc.ssl_target_name_override': 'app.example.test', 'grpc.default_authority': 'tls.example.test' });
    try {
      const r = await call(c, 'unary', 'abc');
      assert.equal(r.err, undefined, r.err?.details);
      assert.equal(r.res?.toString(), 'cba');
    } finally {
      c.close();
    }
  });

  it('answers grpc-status 14 UNAVAILABLE with a message when the upstream is unreachable', async () => {
    const c = new EchoClient(`127.0.0.1:${gw.port}`, grpc.credentials.createSsl(Buffer.from(pki.root.cert.pem)), { 'grpc.ssl_target_name_override': 'app.example.test', 'grpc.default_authority': 'dead.example.test' });
    try {
      const r = await call(c, 'unary', 'x');
      assert.equal(r.err?.code, grpc.status.UNAVAILABLE);
      assert.match(r.err?.details ?? '', /upstream connect error/);
      assert.equal(r.trailers?.get('x-meshcert-error')[0], 'upstream_connect_failure');
    } finally {
      c.close();
    }
  });

  it('serves curl --http2 (ALPN h2) to an HTTP/1.1 upstream', async (t) => {
    const reason = skipUnlessCi(run('curl', ['--version']).status !== 0 && 'curl is not installed');
    if (reason) return t.skip(reason);
    const dir = tempDir();
    t.after(() => dir.cleanup());
    // Asynchronously: the gateway answers from this very process.
    const r = await runAsync('curl', [
      '-sS',
      '--http2',
      '--cacert',
      dir.file('root.pem', pki.root.cert.pem),
      '--resolve',
      `app.example.test:${gw.port}:127.0.0.1`,
      '-H',
      'x-forwarded-client-cert: forged',
      '-w',
      '\n%{http_version} %{http_code}',
      `https://app.example.test:${gw.port}/web/page?x=1`,
    ]);
    assert.equal(r.status, 0, r.stderr);
    const [body, tail] = [r.stdout.slice(0, r.stdout.lastIndexOf('\n')), r.stdout.slice(r.stdout.lastIndexOf('\n') + 1)];
    assert.equal(tail, '2 200');
    const up = JSON.parse(body);
    assert.equal(up.upstream, 'web');
    assert.equal(up.url, '/web/page?x=1');
    assert.equal(up.headers['x-forwarded-client-cert'], undefined);
  });
});
