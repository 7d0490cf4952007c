import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Registry } from 'prom-client';
import type { GatewayFileConfig } from '../config/index.js';
import { describeError, silentLogger, type Logger } from '../core/index.js';
import type { ConnectionContext, ConnectionHandler } from './connection-context.js';
import { Exchange, type AccessLogRecord, type DownstreamConnection, type ExchangeRuntime } from './http-exchange.js';
import { HttpProxyMetrics } from './http-proxy-metrics.js';
import { RouteTable } from './route-table.js';
import { AuthorizationEngine } from './authorization.js';
import { UpstreamPool, type CredentialLookup, type IstioCredentialLookup } from './upstream-pool.js';
import { proxyUpgrade, rawReply } from './upgrade-tunnel.js';
import { xfccValue } from './xfcc.js';

export interface HttpProxyOptions {
  /** The validated gateway file (routes, destination rules, GatewayOptions timeouts and limits). */
  config: GatewayFileConfig;
  /** DestinationRule `credentialName` → upstream TLS material (MUTUAL/SIMPLE origination). */
  credentials?: CredentialLookup;
  /** The gateway's workload identity for ISTIO_MUTUAL origination. */
  istioCredentials?: IstioCredentialLookup;
  /** Where the per-request metrics go (the admin /metrics registry); absent = none. */
  registry?: Registry;
  /** Called once per finished request (and WebSocket tunnel); the listener side writes the access log. */
  onAccessLog?: (record: AccessLogRecord) => void;
  logger?: Logger;
  /** Idle keep-alive connections to upstreams close after this (ms); default 60 s. */
  upstreamIdleTimeoutMs?: number;
  /** A request with no activity for this long is cut (ms; Envoy's stream_idle_timeout); default 5 min. */
  streamIdleTimeoutMs?: number;
}

const kConn = Symbol('meshcert.downstreamConnection');
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
type WithConn = { [kConn]?: DownstreamConnection };

/**
 * The gateway's HTTP side, behind the listener: serves HTTP/1.1 or HTTP/2 (by ALPN) on sockets whose TLS is already
 * terminated (or plain ones), routes each request by the VirtualServices, and forwards it to its upstream over
 * kept-alive HTTP/1.1 or HTTP/2 (gRPC), originating TLS as the DestinationRule says. Requests on a connection wait
 * for its admission verdict (issue #9); a denial gets 403. `update()` swaps the config for new requests without
 * touching established connections; `close()` drains.
 */
export class HttpProxy implements ConnectionHandler {
  readonly #logger: Logger;
  readonly #metrics: HttpProxyMetrics | undefined;
  readonly #pool: UpstreamPool;
  readonly #options: HttpProxyOptions;
  #rt: ExchangeRuntime;
  #h1: http.Server;
  #h2: http2.Http2Server;
  #maxHeaderSize: number;
  #maxConnections: number;
  #idleMs: number;
  readonly #sockets = new Set<Socket>();
  readonly #sessions = new Set<Http2Session>();
  #pendingConn: DownstreamConnection | undefined;
  #closing = false;

  constructor(options: HttpProxyOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#metrics = options.registry ? new HttpProxyMetrics(options.registry) : undefined;
    this.#pool = new UpstreamPool({ credentials: options.credentials, istioCredentials: options.istioCredentials });
    this.#rt = this.#runtime(options.config);
    const o = options.config.options;
    this.#maxHeaderSize = o.limits.maxHeaderSize;
    this.#maxConnections = o.limits.maxConnections;
    this.#idleMs = o.timeouts.idle;
    this.#h1 = this.#makeH1();
    this.#h2 = this.#makeH2();
  }

  /** Open downstream connections. */
  get connections(): number {
    return this.#sockets.size;
  }

  handle(socket: TLSSocket | Socket, ctx: ConnectionContext): void {
    if (this.#closing || this.#sockets.size >= this.#maxConnections) {
      if (!this.#closing) this.#metrics?.connectionRejected();
      socket.destroy();
      return;
    }
    const conn: DownstreamConnection = {
      ctx,
      scheme: ctx.tlsVersion !== undefined ? 'https' : 'http',
      admission: undefined,
      xfcc: undefined,
      server: undefined,
      serverTable: undefined,
    };
    const leaf = ctx.peer?.chain[0];
    if (leaf) {
      try {
        conn.xfcc = xfccValue(leaf, ctx.localUriSans);
      } catch (err) {
        this.#logger.warn({ err: describeError(err), remoteAddress: ctx.remoteAddress }, 'cannot format x-forwarded-client-cert');
      }
    }
    if (ctx.admission) {
      ctx.admission.then(
        (a) => (conn.admission = a),
        (err) => (conn.admission = { allowed: false, reason: `validation failed: ${describeError(err)}` }),
      );
    }
    (socket as WithConn)[kConn] = conn;
    this.#sockets.add(socket);
    this.#metrics?.connectionOpened();
    socket.once('close', () => {
      this.#sockets.delete(socket);
      this.#metrics?.connectionClosed();
    });
    if (ctx.alpn === 'h2') {
      this.#serveH2(socket, conn);
    } else if (ctx.tlsVersion === undefined && ctx.alpn === false) {
      // Plain TCP: HTTP/1.1, or HTTP/2 with prior knowledge (h2c, e.g. gRPC without TLS) by its connection preface.
      // Until the first byte: a client that connects and says nothing is closed like an idle one.
      const firstByteMs = this.#options.streamIdleTimeoutMs ?? 300_000;
      socket.setTimeout(firstByteMs, () => socket.destroy());
      socket.once('data', (chunk: Buffer) => {
        socket.setTimeout(0);
        socket.pause();
        socket.unshift(chunk);
        const n = Math.min(chunk.length, H2_PREFACE.length);
        if (n >= 3 && chunk.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
          this.#serveH2(socket, conn);
        } else {
          this.#h1.emit('connection', socket);
          socket.resume();
        }
      });
      socket.resume();
    } else {
      this.#h1.emit('connection', socket);
    }
  }

  #serveH2(socket: Socket, conn: DownstreamConnection): void {
    this.#pendingConn = conn;
    try {
      this.#h2.emit('connection', socket);
    } finally {
      this.#pendingConn = undefined;
    }
  }

  /** Applies a new config to new requests (routes, destinations, timeouts, limits); connections stay. */
  update(config: GatewayFileConfig): void {
    this.#options.config = config;
    this.#rt = this.#runtime(config);
    this.#pool.retain(this.#rt.table.poolKeys());
    const o = config.options;
    this.#maxConnections = o.limits.maxConnections;
    if (o.limits.maxHeaderSize !== this.#maxHeaderSize || o.timeouts.idle !== this.#idleMs) {
      this.#maxHeaderSize = o.limits.maxHeaderSize;
      this.#idleMs = o.timeouts.idle;
      const old1 = this.#h1;
      this.#h1 = this.#makeH1();
      this.#h2 = this.#makeH2();
      old1.close(() => undefined); // stops its connection-tracking timer; its connections stay
    }
  }

  /** New credentials functions (e.g. after the listener side reconnected to SDS). */
  setCredentials(credentials: CredentialLookup | undefined, istioCredentials: IstioCredentialLookup | undefined): void {
    this.#pool.setCredentials({ credentials, istioCredentials });
  }

  /**
   * Drains: no new connections; idle HTTP/1.1 connections close now and busy ones after their response; HTTP/2
   * sessions get GOAWAY. Resolves when every connection is gone, or destroys the rest after `timeoutMs`.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    this.#closing = true;
    this.#h1.close(() => undefined);
    this.#h1.closeIdleConnections();
    for (const s of this.#sessions) s.close();
    for (const sock of this.#sockets) {
      const c = (sock as WithConn)[kConn];
      if (c && c.ctx.alpn !== 'h2' && !(sock as { _httpMessage?: unknown })._httpMessage) sock.destroy();
    }
    const deadline = Date.now() + timeoutMs;
    while (this.#sockets.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      this.#h1.closeIdleConnections(); // connections whose last response just finished
    }
    for (const sock of this.#sockets) sock.destroy();
    this.#pool.close();
  }

  #runtime(config: GatewayFileConfig): ExchangeRuntime {
    const o = config.options;
    const table = new RouteTable(config, {
      connectTimeoutMs: o.timeouts.upstreamConnect,
      upstreamIdleTimeoutMs: this.#options.upstreamIdleTimeoutMs ?? 60_000,
    });
    return {
      table,
      pool: this.#pool,
      requestTimeoutMs: o.timeouts.request,
      metrics: this.#metrics,
      // Disabled access logs cost nothing per request: no byte counting, no record built.
      onAccessLog: o.accessLog.enabled ? this.#options.onAccessLog : undefined,
      authorization: new AuthorizationEngine(config.authorizationPolicies),
    };
  }

  #makeH1(): http.Server {
    // requestTimeout 0: a long upload or streaming request is cut by the stream idle timeout only (as in Envoy),
    // not after Node's default 5 minutes; headers must still arrive within headersTimeout (60 s).
    const server = http.createServer({ maxHeaderSize: this.#maxHeaderSize, requireHostHeader: true, noDelay: true, requestTimeout: 0 });
    server.keepAliveTimeout = this.#idleMs;
    server.timeout = this.#options.streamIdleTimeoutMs ?? 300_000;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.#onUpgrade(req, socket, head));
    server.on('connect', (_req: IncomingMessage, socket: Socket) => rawReply(socket, 405, 'method_not_allowed', 'CONNECT is not supported'));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (socket.writable && err.code !== 'ECONNRESET') {
        const code = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
        rawReply(socket, code, 'bad_request', http.STATUS_CODES[code] ?? 'bad request');
      } else {
        socket.destroy();
      }
    });
    // Connection tracking (headers/request timeouts, closeIdleConnections) starts on 'listening'; this server never
    // listens itself, the gateway's listener hands it sockets.
    server.emit('listening');
    return server;
  }

  #makeH2(): http2.Http2Server {
    const server = http2.createServer({
      settings: { maxConcurrentStreams: 1000, enableConnectProtocol: false, maxHeaderListSize: this.#maxHeaderSize },
      maxSessionMemory: 64,
    });
    server.on('session', (session: Http2Session) => {
      const conn = this.#pendingConn;
      (session as WithConn)[kConn] = conn;
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
      session.on('error', (err) => this.#logger.debug({ err: describeError(err), remoteAddress: conn?.ctx.remoteAddress }, 'HTTP/2 session error'));
      if (this.#idleMs > 0) session.setTimeout(this.#idleMs, () => session.close());
      if (this.#closing) session.close();
    });
    server.on('stream', (stream: ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      const conn = (stream.session as WithConn | undefined)?.[kConn];
      if (!conn) {
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      stream.on('error', () => undefined); // reported through 'close' and the access log
      this.#start(conn, () => Exchange.h2(this.#rt, conn, stream, headers).run());
    });
    return server;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const conn = (req.socket as WithConn)[kConn];
    if (!conn) {
      res.destroy();
      return;
    }
    if (this.#closing) res.shouldKeepAlive = false;
    this.#start(conn, () => Exchange.h1(this.#rt, conn, req, res).run());
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const conn = (socket as WithConn)[kConn];
    if (!conn) {
      socket.destroy();
      return;
    }
    this.#start(conn, () => proxyUpgrade(this.#rt, conn, req, socket, head, this.#idleMs));
  }

  /** Runs `go` now, or once the connection's admission verdict is in (the request waits, nothing goes upstream). */
  #start(conn: DownstreamConnection, go: () => void): void {
    if (conn.admission !== undefined || conn.ctx.admission === undefined) {
      go();
      return;
    }
    conn.ctx.admission.then(go, go);
  }
}
