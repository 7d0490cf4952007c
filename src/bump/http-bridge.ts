import {
  Agent,
  createServer as createHttpServer,
  request as httpRequest,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import {
  createServer as createHttp2Server,
  constants as h2,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type OutgoingHttpHeaders,
} from 'node:http2';
import * as stream from 'node:stream';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { rawHead, rawReply, relayDeclinedUpgrade } from '../gateway/index.js';
import { ErrorCodes, MeshError, describeError, silentLogger, type Logger } from '../core/index.js';
import type { AuditSink } from './audit-log.js';
import { runRequestFilters, runResponseFilters, type BumpFilter, type BumpHttpRequest, type BumpHttpResponse } from './bump-filters.js';
import type { BumpMetrics } from './bump-metrics.js';
import type { UpstreamResolver } from './upstream-connector.js';
import type { UpstreamHost } from './upstream-pool.js';

/** Connection-level headers (RFC 9110 §7.6.1, RFC 9113 §8.2.2) never forwarded across the proxy. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']);

/** One bumped client connection: what it was made for, and the shared upstream connections of its host. */
export interface BumpedConnection {
  client: string;
  serverName: string;
  port: number;
  mimicSerial: string;
  upstream: UpstreamHost;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

interface Upstream {
  /** Sends the request head; the body is piped in by the caller. Resolves the response head and body. */
  send(req: BumpHttpRequest, authority: string): { outgoing: NodeJS.WritableStream; response: Promise<{ status: number; headers: IncomingHttpHeaders; body: NodeJS.ReadableStream }>; abort(): void };
  close(): void;
}

function copyHeaders(src: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const connectionTokens = typeof src.connection === 'string' ? src.connection.toLowerCase().split(',').map((t) => t.trim()) : [];
  for (const [k, v] of Object.entries(src)) {
    if (v === undefined || k.startsWith(':') || HOP_BY_HOP.has(k) || connectionTokens.includes(k)) continue;
    out[k] = v;
  }
  return out;
}

/** HTTP/1.1 upstream: the host's shared keep-alive agent (verified connections only). */
class Http1Upstream implements Upstream {
  constructor(private readonly host: UpstreamHost) {}

  send(req: BumpHttpRequest, authority: string): ReturnType<Upstream['send']> {
    const out: ClientRequest = httpRequest({
      agent: this.host.agent,
      method: req.method,
      path: req.path,
      headers: { ...req.headers, host: authority },
      setHost: false,
    });
    const response = new Promise<{ status: number; headers: IncomingHttpHeaders; body: NodeJS.ReadableStream }>((resolve, reject) => {
      out.once('response', (res: IncomingMessage) => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: res }));
      out.once('error', reject);
    });
    return { outgoing: out, response, abort: () => out.destroy() };
  }

  close(): void {
    // The connections belong to the host's pool, shared with other client connections.
  }
}

/** HTTP/2 upstream: the host's shared session, streams as the client opens them. */
class Http2Upstream implements Upstream {
  constructor(private readonly host: UpstreamHost) {}

  send(req: BumpHttpRequest, authority: string): ReturnType<Upstream['send']> {
    const outgoing = new stream.PassThrough();
    let aborted = false;
    let streamRef: { close(code?: number): void } | null = null;
    const response = this.host.session().then(
      (session) =>
        new Promise<{ status: number; headers: IncomingHttpHeaders; body: NodeJS.ReadableStream }>((resolve, reject) => {
          if (aborted) return reject(new Error('aborted'));
          const headers: OutgoingHttpHeaders = { ...req.headers, [h2.HTTP2_HEADER_METHOD]: req.method, [h2.HTTP2_HEADER_PATH]: req.path, [h2.HTTP2_HEADER_AUTHORITY]: authority, [h2.HTTP2_HEADER_SCHEME]: 'https' };
          delete headers.host;
          const s = session.request(headers, { endStream: false });
          streamRef = s;
          outgoing.pipe(s);
          s.once('response', (h) => resolve({ status: Number(h[h2.HTTP2_HEADER_STATUS] ?? 502), headers: h as IncomingHttpHeaders, body: s }));
          s.once('error', reject);
          s.once('close', () => reject(new Error(`upstream closed the stream (code ${s.rstCode})`)));
        }),
    );
    return {
      outgoing,
      response,
      abort: () => {
        aborted = true;
        streamRef?.close(h2.NGHTTP2_CANCEL);
      },
    };
  }

  close(): void {
    // The session is the host's, shared with other client connections.
  }
}

export interface HttpBridgeOptions {
  filters: readonly BumpFilter[];
  audit: AuditSink;
  metrics: BumpMetrics;
  logger?: Logger;
  /** For plain-HTTP forward proxying. */
  resolve: UpstreamResolver;
  /** Idle time after which a client connection is closed, ms. */
  idleTimeoutMs: number;
}

function hostOf(authority: string): string {
  const a = authority.toLowerCase();
  if (a.startsWith('[')) return a.slice(1, a.indexOf(']'));
  const colon = a.lastIndexOf(':');
  return colon > 0 ? a.slice(0, colon) : a;
}

function plainText(res: AnyResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy?.();
    return;
  }
  const body = `${text}\n`;
  (res as ServerResponse).writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), ...extra });
  res.end(body);
}

/**
 * The decrypted side of the proxy: HTTP/1.1 or HTTP/2 (as the upstream chose by ALPN) from the client, through the
 * filters, to the upstream and back; plain-HTTP forward proxying too. Each request is one audit line.
 */
export class HttpBridge {
  readonly #o: HttpBridgeOptions;
  readonly #log: Logger;
  readonly #forwardAgent = new Agent({ keepAlive: true, maxSockets: 256 });

  constructor(options: HttpBridgeOptions) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
  }

  /** Serves one bumped connection whose TLS handshake with the client has completed. */
  serveBumped(tls: TLSSocket, conn: BumpedConnection): void {
    const h2c = tls.alpnProtocol === 'h2';
    const upstream: Upstream = h2c ? new Http2Upstream(conn.upstream) : new Http1Upstream(conn.upstream);
    const handler = (req: AnyRequest, res: AnyResponse): void => {
      this.#handle(req, res, { conn, upstream, protocol: h2c ? 'h2' : 'http/1.1', scheme: 'https' }).catch((err: unknown) => {
        this.#log.error({ err: describeError(err), stack: (err as Error)?.stack }, 'bump: unexpected error in a bumped request');
        plainText(res, 502, 'meshcert bump: internal error');
      });
    };
    const server = h2c ? createHttp2Server({}, handler) : createHttpServer({ keepAliveTimeout: this.#o.idleTimeoutMs }, handler);
    if (!h2c) {
      server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
        this.#upgrade(req, socket, head, conn).catch((err: unknown) => {
          this.#log.error({ err: describeError(err), stack: (err as Error)?.stack }, 'bump: unexpected error in an Upgrade request');
          socket.destroy();
        });
      });
    }
    server.on('clientError', (_err: Error, sock: stream.Duplex) => sock.destroy());
    server.on('sessionError', () => undefined);
    tls.once('close', () => upstream.close());
    tls.setTimeout(this.#o.idleTimeoutMs, () => tls.destroy());
    // tls.Server clears this flag when it hands a socket over ('secureConnection'); a TLSSocket made by hand keeps
    // it, and an HTTP/2 session would then wait for a 'secureConnect' that a server-side socket never emits.
    (tls as unknown as { secureConnecting: boolean }).secureConnecting = false;
    server.emit('connection', tls);
  }

  /** A plain-HTTP request to the explicit proxy port with an absolute URL (`GET http://host/path`). */
  async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const client = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    let url: URL;
    try {
      url = new URL(req.url ?? '');
      if (url.protocol !== 'http:') throw new Error('not http');
    } catch {
      this.#o.metrics.clientErrors.inc({ reason: 'bad-request' });
      plainText(res, 400, `meshcert bump: this is a proxy; send CONNECT host:port or an absolute http:// URL (got "${req.url ?? ''}")`);
      return;
    }
    const port = Number(url.port || 80);
    const addr = this.#o.resolve(url.hostname, port);
    const agent = this.#forwardAgent;
    const upstream: Upstream = {
      send: (r) => {
        const out = httpRequest({ agent, host: addr.host, port: addr.port, method: r.method, path: r.path, headers: { ...r.headers, host: url.host }, setHost: false });
        const response = new Promise<{ status: number; headers: IncomingHttpHeaders; body: NodeJS.ReadableStream }>((resolve, reject) => {
          out.once('response', (m: IncomingMessage) => resolve({ status: m.statusCode ?? 502, headers: m.headers, body: m }));
          out.once('error', reject);
        });
        return { outgoing: out, response, abort: () => out.destroy() };
      },
      close: () => undefined,
    };
    await this.#handle(req, res, {
      conn: { client, serverName: url.hostname, port, mimicSerial: '' },
      upstream,
      protocol: 'http/1.1',
      scheme: 'http',
      forwardUrl: url,
    });
  }

  async #handle(
    req: AnyRequest,
    res: AnyResponse,
    ctx: {
      conn: Pick<BumpedConnection, 'client' | 'serverName' | 'port' | 'mimicSerial'>;
      upstream: Upstream;
      protocol: 'http/1.1' | 'h2';
      scheme: 'http' | 'https';
      forwardUrl?: URL;
    },
  ): Promise<void> {
    const { conn } = ctx;
    const method = req.method ?? 'GET';
    const authority = ctx.forwardUrl
      ? ctx.forwardUrl.host
      : String((ctx.protocol === 'h2' ? req.headers[':authority'] : req.headers.host) ?? (conn.port === 443 ? conn.serverName : `${conn.serverName}:${conn.port}`));
    const path = ctx.forwardUrl ? `${ctx.forwardUrl.pathname}${ctx.forwardUrl.search}` : String((ctx.protocol === 'h2' ? req.headers[':path'] : req.url) ?? '/');
    const request: BumpHttpRequest = {
      client: conn.client,
      serverName: conn.serverName,
      mode: ctx.scheme === 'https' ? 'bumped' : 'forward',
      protocol: ctx.protocol,
      method,
      host: hostOf(authority),
      path,
      url: `${ctx.scheme}://${authority}${path}`,
      headers: copyHeaders(req.headers),
    };
    const audit = (status: number, bytes: number, reason?: string): void =>
      this.#o.audit.write({
        event: 'request',
        client: conn.client,
        sni: ctx.scheme === 'https' ? conn.serverName : null,
        method,
        url: request.url,
        status,
        bytes,
        mimicSerial: conn.mimicSerial || null,
        protocol: ctx.protocol,
        ...(reason ? { reason } : {}),
      });
    // Bumped requests must stay on the host the client connected to: a Host header naming another host would let a
    // client reach (through an allowed SNI) a host the filters never saw.
    if (ctx.scheme === 'https' && request.host !== conn.serverName.toLowerCase()) {
      this.#o.metrics.requests.inc({ protocol: ctx.protocol, decision: 'denied' });
      const reason = `Host ${request.host} is not the host this connection was made for (${conn.serverName})`;
      plainText(res, 421, `meshcert bump: ${reason}`);
      audit(421, 0, reason);
      return;
    }
    try {
      const outcome = await runRequestFilters(this.#o.filters, request);
      if (outcome.denied) {
        this.#o.metrics.requests.inc({ protocol: ctx.protocol, decision: 'denied' });
        plainText(res, outcome.denied.status, `meshcert bump: ${method} ${request.url} denied: ${outcome.denied.reason}`, { 'x-meshcert-bump-denied': outcome.denied.filter });
        audit(outcome.denied.status, 0, `denied: ${outcome.denied.reason}`);
        req.resume();
        return;
      }
    } catch (err) {
      this.#log.warn({ err: describeError(err), url: request.url }, 'bump filter failed');
      this.#o.metrics.requests.inc({ protocol: ctx.protocol, decision: 'error' });
      plainText(res, 500, `meshcert bump: ${describeError(err)}`);
      audit(500, 0, describeError(err));
      return;
    }
    this.#o.metrics.requests.inc({ protocol: ctx.protocol, decision: 'allowed' });
    const sent = ctx.upstream.send(request, authority);
    // Most requests have no body: end the upstream request at once instead of piping an empty stream.
    const noBody =
      ctx.protocol === 'h2'
        ? (req as Http2ServerRequest).stream.endAfterHeaders
        : req.headers['transfer-encoding'] === undefined && (req.headers['content-length'] === undefined || req.headers['content-length'] === '0');
    if (noBody) {
      sent.outgoing.end();
      (req as stream.Readable).resume();
    } else (req as stream.Readable).pipe(sent.outgoing as unknown as stream.Writable);
    res.once('close', () => {
      if (!res.writableFinished) sent.abort();
    });
    let upstreamRes: { status: number; headers: IncomingHttpHeaders; body: NodeJS.ReadableStream };
    try {
      upstreamRes = await sent.response;
    } catch (err) {
      const why = err instanceof MeshError ? err.message : `upstream ${authority}: ${describeError(err)}`;
      this.#o.metrics.upstreamErrors.inc({ stage: 'request' });
      plainText(res, 502, `meshcert bump: ${why}`);
      audit(502, 0, why);
      return;
    }
    const response: BumpHttpResponse = { status: upstreamRes.status, headers: copyHeaders(upstreamRes.headers) };
    try {
      await runResponseFilters(this.#o.filters, response, request);
    } catch (err) {
      (upstreamRes.body as stream.Readable).destroy();
      plainText(res, 502, `meshcert bump: ${describeError(err)}`);
      audit(502, 0, describeError(err));
      return;
    }
    let bytes = 0;
    const body = upstreamRes.body as stream.Readable;
    body.on('data', (chunk: Buffer) => (bytes += chunk.length));
    try {
      (res as ServerResponse).writeHead(response.status, response.headers);
    } catch (err) {
      body.destroy();
      const why = new MeshError(ErrorCodes.BUMP_UPSTREAM, `upstream ${authority} sent a response head that cannot be forwarded: ${describeError(err)}`).message;
      plainText(res, 502, `meshcert bump: ${why}`);
      audit(502, 0, why);
      return;
    }
    body.pipe(res as unknown as stream.Writable);
    body.once('error', () => res.destroy?.());
    res.once('close', () => audit(response.status, bytes, res.writableFinished ? undefined : 'connection closed before the response ended'));
  }

  /**
   * An HTTP/1.1 Upgrade (WebSocket) on a bumped connection: the request goes through the host check and the request
   * filters like any other, then over a verified upstream connection of its own; on `101` both sides are spliced
   * (the frames are not filtered), any other answer is relayed and the connection closed. One audit line at the end.
   */
  async #upgrade(req: IncomingMessage, socket: Socket, head: Buffer, conn: BumpedConnection): Promise<void> {
    socket.on('error', () => undefined);
    const method = req.method ?? 'GET';
    const authority = String(req.headers.host ?? (conn.port === 443 ? conn.serverName : `${conn.serverName}:${conn.port}`));
    const path = req.url ?? '/';
    const protocol = String(req.headers.upgrade ?? '');
    const request: BumpHttpRequest = {
      client: conn.client,
      serverName: conn.serverName,
      mode: 'bumped',
      protocol: 'http/1.1',
      method,
      host: hostOf(authority),
      path,
      url: `https://${authority}${path}`,
      headers: copyHeaders(req.headers),
    };
    let bytes = 0;
    const audit = (status: number, reason?: string): void =>
      this.#o.audit.write({
        event: 'request',
        client: conn.client,
        sni: conn.serverName,
        method,
        url: request.url,
        status,
        bytes,
        mimicSerial: conn.mimicSerial || null,
        protocol: 'http/1.1',
        upgrade: protocol,
        ...(reason ? { reason } : {}),
      });
    const refuse = (status: number, decision: 'denied' | 'error', reason: string): void => {
      this.#o.metrics.requests.inc({ protocol: 'http/1.1', decision });
      rawReply(socket, status, decision === 'denied' ? 'bump_denied' : 'bump_upstream_error', `meshcert bump: ${reason}`);
      audit(status, reason);
    };
    if (request.host !== conn.serverName.toLowerCase()) {
      refuse(421, 'denied', `Host ${request.host} is not the host this connection was made for (${conn.serverName})`);
      return;
    }
    try {
      const outcome = await runRequestFilters(this.#o.filters, request);
      if (outcome.denied) {
        refuse(outcome.denied.status, 'denied', `${method} ${request.url} denied: ${outcome.denied.reason}`);
        return;
      }
    } catch (err) {
      refuse(500, 'error', describeError(err));
      return;
    }
    let upSocket: TLSSocket;
    try {
      upSocket = await conn.upstream.dedicated();
    } catch (err) {
      this.#o.metrics.upstreamErrors.inc({ stage: 'request' });
      refuse(502, 'error', err instanceof MeshError ? err.message : `upstream ${authority}: ${describeError(err)}`);
      return;
    }
    if (socket.destroyed) {
      upSocket.destroy();
      return;
    }
    this.#o.metrics.requests.inc({ protocol: 'http/1.1', decision: 'allowed' });
    // The filters' headers, with the Upgrade and Connection headers that copyHeaders leaves out as hop-by-hop.
    const out = httpRequest({
      createConnection: () => upSocket,
      method,
      path,
      headers: { ...request.headers, host: authority, connection: 'upgrade', upgrade: protocol },
      setHost: false,
    });
    socket.once('close', () => out.destroy());
    out.on('error', (err) => {
      this.#o.metrics.upstreamErrors.inc({ stage: 'request' });
      refuse(502, 'error', `upstream ${authority}: ${describeError(err)}`);
    });
    out.on('response', (res: IncomingMessage) => {
      // The upstream declined the upgrade: relay its answer, then close.
      res.on('data', (c: Buffer) => (bytes += c.length));
      relayDeclinedUpgrade(res, socket);
      res.once('end', () => audit(res.statusCode ?? 502));
    });
    out.on('upgrade', (res: IncomingMessage, tunnel: Socket, upHead: Buffer) => {
      socket.write(rawHead(101, res.statusMessage ?? 'Switching Protocols', res.rawHeaders));
      if (upHead.length) socket.write(upHead);
      if (head.length) tunnel.write(head);
      tunnel.on('error', () => socket.destroy());
      socket.on('data', (c: Buffer) => (bytes += c.length));
      tunnel.on('data', (c: Buffer) => (bytes += c.length));
      socket.pipe(tunnel);
      tunnel.pipe(socket);
      socket.setTimeout(this.#o.idleTimeoutMs, () => socket.destroy());
      let ended = false;
      const end = (): void => {
        if (ended) return;
        ended = true;
        socket.destroy();
        tunnel.destroy();
        audit(101);
      };
      socket.once('close', end);
      tunnel.once('close', end);
    });
    out.end();
  }

  close(): void {
    this.#forwardAgent.destroy();
  }
}
