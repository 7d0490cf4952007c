// Helpers for the HTTP proxy tests: a run-time PKI, a small stand-in listener (TLS terminated by a tls.Server that
// hands each socket to HttpProxy with a ConnectionContext), and real upstreams (http, https, http2).
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { parseGatewayFile } from '../../src/config/index.js';
import type { Admission, ConnectionContext, PeerIdentity } from '../../src/gateway/connection-context.js';
import type { AccessLogRecord } from '../../src/gateway/http-exchange.js';
import { HttpProxy, type HttpProxyOptions } from '../../src/gateway/http-proxy.js';
import { TestCA, type IssuedLeaf } from '../helpers/test-ca.js';

export interface Pki {
  root: TestCA;
  ca: TestCA;
  /** The gateway's serving certificate (app.example.test, *.example.test). */
  gateway: IssuedLeaf;
  /** An upstream's certificate: DNS upstream.test + SPIFFE ID spiffe://cluster.local/ns/app/sa/backend. */
  upstream: IssuedLeaf;
  /** A client certificate (SPIFFE ID spiffe://cluster.local/ns/shop/sa/cart). */
  client: IssuedLeaf;
}

export async function makePki(): Promise<Pki> {
  const root = await TestCA.root({ name: 'http proxy test root' });
  const ca = await root.child({ name: 'http proxy test intermediate' });
  const gateway = await ca.issueServer(['app.example.test', '*.example.test']);
  const upstream = await ca.issue({
    subject: 'CN=upstream.test, O=meshcert tests',
    sans: [
      { type: 'dns', value: 'upstream.test' },
      { type: 'uri', value: 'spiffe://cluster.local/ns/app/sa/backend' },
    ],
    keyUsage: ['digitalSignature', 'keyEncipherment'],
    extKeyUsage: ['serverAuth', 'clientAuth'],
  });
  const client = await ca.issueSvid('spiffe://cluster.local/ns/shop/sa/cart', { subject: 'CN=cart, OU=shop, O=meshcert tests' });
  return { root, ca, gateway, upstream, client };
}

/** Gateway `edge`: one HTTPS server on 8443 for `hosts`, credential app-cred (the head of most test gateway files). */
export function edgeGateway(mode: 'SIMPLE' | 'MUTUAL' = 'SIMPLE', hosts: readonly string[] = ['app.example.test']): string {
  return `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [${hosts.join(', ')}]
    tls: { mode: ${mode}, credentialName: app-cred }
---`;
}

/** VirtualService `name` bound to `edge` for `hosts`; its `http:` route list follows (in `http`, or in the text after it). */
export function edgeVirtualService(http = '', hosts: readonly string[] = ['app.example.test'], name = 'app'): string {
  return `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name} }
spec:
  hosts: [${hosts.join(', ')}]
  gateways: [edge]
  http:${http}`;
}

export interface StandIn {
  port: number;
  proxy: HttpProxy;
  logs: AccessLogRecord[];
  registry: Registry;
  contexts: ConnectionContext[];
  close(): Promise<void>;
}

export interface StandInOptions {
  /** The Gateway server port the contexts report (the config's port.number). */
  listenerPort?: number;
  peer?: PeerIdentity;
  admission?: () => Promise<Admission>;
  /** Request a client certificate and put it in ctx.peer. */
  mutual?: boolean;
  proxy?: Partial<HttpProxyOptions>;
  plain?: boolean;
}

/**
 * A stand-in for gateway-TLS's listener: terminates TLS with the gateway certificate (ALPN h2 and http/1.1) on an
 * ephemeral port and hands the socket to the proxy, as the real listener does after the handshake.
 */
export async function startStandIn(pki: Pki, yaml: string, options: StandInOptions = {}): Promise<StandIn> {
  const config = parseGatewayFile(yaml, 'test gateway file');
  const registry = new Registry();
  const logs: AccessLogRecord[] = [];
  const contexts: ConnectionContext[] = [];
  const proxy = new HttpProxy({ config, registry, onAccessLog: (r) => logs.push(r), ...options.proxy });
  const ctxOf = (sock: net.Socket, t?: tls.TLSSocket): ConnectionContext => {
    let peer = options.peer;
    if (options.mutual && t) {
      const der = t.getPeerX509Certificate()?.raw;
      if (der) peer = { chain: [pki.client.cert], spiffeId: pki.client.cert.spiffeIds[0] };
    }
    const ctx: ConnectionContext = {
      listenerPort: options.listenerPort ?? 8443,
      serverHosts: ['app.example.test'],
      serverName: t ? ((t as tls.TLSSocket & { servername?: string | false }).servername || undefined) : undefined,
      alpn: t ? t.alpnProtocol ?? false : false,
      tlsVersion: t ? t.getProtocol() ?? undefined : undefined,
      remoteAddress: sock.remoteAddress ?? '',
      remotePort: sock.remotePort ?? 0,
      peer,
      admission: options.admission?.(),
    };
    contexts.push(ctx);
    return ctx;
  };
  let server: net.Server;
  if (options.plain) {
    server = net.createServer((s) => proxy.handle(s, ctxOf(s)));
  } else {
    server = tls.createServer(
      {
        key: pki.gateway.keyPem,
        cert: pki.gateway.chainPem,
        ALPNProtocols: ['h2', 'http/1.1'],
        ...(options.mutual ? { requestCert: true, rejectUnauthorized: true, ca: pki.root.cert.pem } : {}),
      },
      (t) => proxy.handle(t, ctxOf(t, t)),
    );
  }
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    proxy,
    logs,
    registry,
    contexts,
    async close() {
      server.close();
      await proxy.close(2000);
    },
  };
}

/** The access-log record matching `pred`, waiting a little: a record is written when the response has closed. */
export async function logFor(gw: StandIn, pred: (r: AccessLogRecord) => boolean): Promise<AccessLogRecord | undefined> {
  for (let i = 0; i < 100; i++) {
    const r = gw.logs.find(pred);
    if (r) return r;
    await new Promise((res) => setTimeout(res, 10));
  }
  return undefined;
}

export interface EchoUpstream {
  port: number;
  /** Requests seen, with their headers. */
  seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string; peerCert?: string }>;
  server: net.Server;
  /** TCP connections accepted so far (keep-alive reuse shows as fewer connections than requests). */
  connections(): number;
  close(): Promise<void>;
}

function counted(server: net.Server): () => number {
  let n = 0;
  server.on('connection', () => n++);
  return () => n;
}

function echoHandler(seen: EchoUpstream['seen'], name: string) {
  return (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const sock = req.socket as tls.TLSSocket;
      const peerCert = typeof sock.getPeerX509Certificate === 'function' ? sock.getPeerX509Certificate()?.subject : undefined;
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers as http.IncomingHttpHeaders, body, ...(peerCert ? { peerCert } : {}) });
      const out = JSON.stringify({ upstream: name, method: req.method, url: req.url, headers: req.headers, body, httpVersion: req.httpVersion });
      (res as http.ServerResponse).writeHead(200, { 'content-type': 'application/json', 'x-upstream': name, 'x-remove-me': 'yes' });
      res.end(out);
    });
  };
}

/** An HTTP/1.1 upstream echoing method, url, headers and body as JSON. */
export async function startHttpUpstream(name = 'http'): Promise<EchoUpstream> {
  const seen: EchoUpstream['seen'] = [];
  const server = http.createServer(echoHandler(seen, name) as http.RequestListener);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, seen, server, connections: counted(server), close: () => closeServer(server) };
}

/** An HTTPS upstream with the upstream certificate; `requestCert` asks for (and requires) a client certificate. */
export async function startHttpsUpstream(pki: Pki, name = 'https', requestCert = false): Promise<EchoUpstream> {
  const seen: EchoUpstream['seen'] = [];
  const server = https.createServer(
    { key: pki.upstream.keyPem, cert: pki.upstream.chainPem, ...(requestCert ? { requestCert: true, rejectUnauthorized: true, ca: pki.root.cert.pem } : {}) },
    echoHandler(seen, name) as http.RequestListener,
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, seen, server, connections: counted(server), close: () => closeServer(server) };
}

/** A cleartext HTTP/2 upstream (h2c, prior knowledge). */
export async function startH2cUpstream(name = 'h2c'): Promise<EchoUpstream> {
  const seen: EchoUpstream['seen'] = [];
  const server = http2.createServer(echoHandler(seen, name) as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, seen, server, connections: counted(server), close: () => closeServer(server) };
}

export async function closeServer(server: net.Server): Promise<void> {
  (server as http.Server).closeAllConnections?.();
  await new Promise<void>((r) => server.close(() => r()));
}

/** A port nothing listens on (bound then closed). */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** An HTTPS/1.1 request to the stand-in (a fresh agent per call unless one is given). */
export function h1(
  port: number,
  pki: Pki,
  opts: { path?: string; method?: string; host?: string; headers?: Record<string, string>; body?: string; agent?: https.Agent; servername?: string; clientCert?: IssuedLeaf } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: opts.path ?? '/',
        method: opts.method ?? 'GET',
        servername: opts.servername ?? 'app.example.test',
        ca: pki.root.cert.pem,
        headers: { host: opts.host ?? 'app.example.test', ...opts.headers },
        agent: opts.agent ?? false,
        ALPNProtocols: ['http/1.1'],
        ...(opts.clientCert ? { key: opts.clientCert.keyPem, cert: opts.clientCert.chainPem } : {}),
      } as https.RequestOptions,
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** An HTTP/2 request over a session to the stand-in. */
export function h2(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<Reply & { trailers: http2.IncomingHttpHeaders | undefined }> {
  return new Promise((resolve, reject) => {
    const s = session.request(headers, { endStream: body === undefined });
    let trailers: http2.IncomingHttpHeaders | undefined;
    let status = 0;
    let rh: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    s.on('response', (h) => {
      rh = h;
      status = Number(h[':status']);
    });
    s.on('trailers', (t) => (trailers = t));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve({ status, headers: rh as http.IncomingHttpHeaders, body: Buffer.concat(chunks).toString(), trailers }));
    s.on('error', reject);
    if (body !== undefined) s.end(body);
  });
}

export function connectH2(port: number, pki: Pki): http2.ClientHttp2Session {
  const session = http2.connect(`https://app.example.test:${port}`, {
    ca: pki.root.cert.pem,
    createConnection: () => tls.connect({ host: '127.0.0.1', port, servername: 'app.example.test', ca: pki.root.cert.pem, ALPNProtocols: ['h2'] }),
  });
  session.on('error', () => undefined);
  return session;
}
