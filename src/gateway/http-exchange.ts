import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type ClientHttp2Stream, type ServerHttp2Stream } from 'node:http2';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import type { Readable, Writable } from 'node:stream';
import type { ServerRef } from '../config/index.js';
import { authorizeRequest, type AuthorizationEngine } from './authorization.js';
import type { Admission, ConnectionContext } from './connection-context.js';
import { appendForwardedFor, applyHeaderOps, stripHopByHop, stripPseudo, type HeaderMap } from './forward-headers.js';
import type { HttpProxyMetrics } from './http-proxy-metrics.js';
import { circuitBreakerOf, type CircuitBreaker } from './circuit-breaker.js';
import { retriesFailure, retriesResponse, retryBackoffMs, retryPolicyOf, type RetryPolicy } from './retry-policy.js';
import type { RouteTable, RoutedRequest } from './route-table.js';
import { ProxyErrorReason, REASON_TEXT, UpstreamError, classifyUpstreamError, grpcStatusForHttp, type ProxyErrorReasonCode } from './upstream-error.js';
import type { UpstreamPool } from './upstream-pool.js';
import { XFCC_HEADER } from './xfcc.js';

/** One line of the access log: one per request (or WebSocket tunnel), emitted when it ends. */
export interface AccessLogRecord {
  /** Start of the request, ms since the epoch. */
  startTime: number;
  method: string;
  authority: string;
  path: string;
  protocol: 'HTTP/1.1' | 'HTTP/2';
  /** Status sent downstream; 0 when the client went away before any response. */
  status: number;
  bytesReceived: number;
  bytesSent: number;
  durationMs: number;
  /** Upstream address (host:port) and destination host, when routed. */
  upstream: string | undefined;
  upstreamHost: string | undefined;
  /** `VIRTUALSERVICE/http[INDEX]` of the route taken. */
  route: string | undefined;
  /** Why the gateway answered itself or cut the exchange (a ProxyErrorReason), and the detail. */
  error: ProxyErrorReasonCode | undefined;
  detail: string | undefined;
  /** The verified client's SPIFFE ID (MUTUAL / ISTIO_MUTUAL). */
  peer: string | undefined;
  remoteAddress: string;
  serverName: string | undefined;
  grpcStatus: string | undefined;
  /** Upstream tries made again under the route's retries policy. */
  retries: number;
}

/** What a proxied request needs from the proxy, swapped as a whole on a config reload. */
export interface ExchangeRuntime {
  table: RouteTable;
  pool: UpstreamPool;
  /** Default whole-request timeout (ms, 0 = none); a route's `timeout` wins. */
  requestTimeoutMs: number;
  metrics: HttpProxyMetrics | undefined;
  onAccessLog: ((record: AccessLogRecord) => void) | undefined;
  /** AuthorizationPolicy of the gateway file, evaluated per request before routing (as Envoy's RBAC filter). */
  authorization: AuthorizationEngine;
}

/** Requests or sockets over every name of an http.Agent's lists. */
function countAll(lists: NodeJS.ReadOnlyDict<unknown[]>): number {
  let n = 0;
  for (const l of Object.values(lists)) n += l?.length ?? 0;
  return n;
}

/** Requests sent over each upstream connection (HTTP/1.1 socket or HTTP/2 session), for maxRequestsPerConnection. */
const requestsOnConnection = new WeakMap<object, number>();

/** The largest request body kept for a retry (Envoy buffers up to its per-connection buffer limit). */
const MAX_RETRY_BODY = 64 * 1024;

/** Per downstream connection: its context, the admission verdict once known, its XFCC value. */
export interface DownstreamConnection {
  ctx: ConnectionContext;
  scheme: 'http' | 'https';
  admission: Admission | undefined;
  /** The Envoy-format XFCC value when a client certificate was verified. */
  xfcc: string | undefined;
  /** The Gateway server, looked up once per connection and table. */
  server: ServerRef | undefined;
  serverTable: RouteTable | undefined;
}

const kNoTrailers = Object.freeze({}) as HeaderMap;

/** Percent-encodes a grpc-message as the gRPC spec asks (bytes outside 0x20-0x7E, and `%`). */
export function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function isGrpc(h: HeaderMap): boolean {
  const ct = h['content-type'];
  return typeof ct === 'string' && ct.startsWith('application/grpc');
}

/**
 * One request through the proxy, for both downstream protocols (HTTP/1.1 request/response or an HTTP/2 stream) and
 * both upstream ones (keep-alive HTTP/1.1 agent or a shared HTTP/2 session): route, rewrite headers, forward with
 * streaming bodies and backpressure (pipe), relay the response and trailers, and answer locally on failure.
 */
export class Exchange {
  readonly #rt: ExchangeRuntime;
  readonly #conn: DownstreamConnection;
  readonly #res: ServerResponse | undefined;
  readonly #stream: ServerHttp2Stream | undefined;
  readonly #body: Readable;
  readonly #h: HeaderMap;
  readonly #hasBody: boolean;
  readonly #method: string;
  readonly #authority: string;
  readonly #path: string;
  readonly #grpc: boolean;
  readonly #t0 = performance.now();
  readonly #startTime = Date.now();
  #routed: RoutedRequest | undefined;
  #upReq: ClientRequest | undefined;
  #upStream: ClientHttp2Stream | undefined;
  #upTrailers: HeaderMap | undefined;
  #timer: NodeJS.Timeout | undefined;
  #status = 0;
  #grpcStatus: string | undefined;
  #reason: ProxyErrorReasonCode | undefined;
  #detail: string | undefined;
  #bytesIn = 0;
  #bytesOut = 0;
  #responded = false;
  #connected = false;
  #retried = false;
  #done = false;
  // VirtualService retries: the route's policy, retries made, the request body kept for them, the per-try timer.
  #policy: RetryPolicy | null = null;
  #retries = 0;
  #bodyCopy: Buffer[] | null = null;
  #bodyCopyBytes = 0;
  #tryTimer: NodeJS.Timeout | undefined;
  #backoffTimer: NodeJS.Timeout | undefined;
  #refusedStream = false;
  /** A failure no retry may follow (the whole-request timeout). */
  #final = false;
  #upHeaders: HeaderMap | undefined;
  /** The destination's circuit breaker, when its DestinationRule sets limits; this request counts in it. */
  #breaker: CircuitBreaker | null = null;
  #retryCounted = false;
  #upAuthority = '';
  #useH2 = false;

  /** HTTP/1.1: from the request and its response. */
  static h1(rt: ExchangeRuntime, conn: DownstreamConnection, req: IncomingMessage, res: ServerResponse): Exchange {
    const h = req.headers as HeaderMap;
    const hasBody = (h['content-length'] !== undefined && h['content-length'] !== '0') || h['transfer-encoding'] !== undefined;
    return new Exchange(rt, conn, h, req, res, undefined, hasBody, req.method ?? 'GET', (h.host as string | undefined) ?? '', req.url ?? '/');
  }

  /** HTTP/2: from the stream and its headers. */
  static h2(rt: ExchangeRuntime, conn: DownstreamConnection, stream: ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Exchange {
    const h = headers as HeaderMap;
    const authority = (h[':authority'] ?? h.host ?? '') as string;
    return new Exchange(rt, conn, h, stream, undefined, stream, !stream.endAfterHeaders, (h[':method'] as string) ?? 'GET', authority, (h[':path'] as string) ?? '/');
  }

  private constructor(
    rt: ExchangeRuntime,
    conn: DownstreamConnection,
    h: HeaderMap,
    body: Readable,
    res: ServerResponse | undefined,
    stream: ServerHttp2Stream | undefined,
    hasBody: boolean,
    method: string,
    authority: string,
    path: string,
  ) {
    this.#rt = rt;
    this.#conn = conn;
    this.#h = h;
    this.#body = body;
    this.#res = res;
    this.#stream = stream;
    this.#hasBody = hasBody;
    this.#method = method;
    this.#authority = authority;
    this.#path = path;
    this.#grpc = isGrpc(h);
  }

  /** Routes and forwards the request; a failure of our own is a 500 (or a reset), never a crash. */
  run(): void {
    try {
      this.#run();
    } catch (err) {
      this.#failed(err);
    }
  }

  #failed(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.#abortUpstream();
    if (!this.#responded) this.#local(500, ProxyErrorReason.INTERNAL, undefined, message);
    else {
      this.#reason = ProxyErrorReason.INTERNAL;
      this.#detail = message;
      this.#resetDownstream();
    }
  }

  #run(): void {
    const done = () => this.#finish();
    if (this.#res) this.#res.once('close', done);
    else this.#stream!.once('close', done);
    if (this.#rt.onAccessLog && this.#hasBody) this.#body.on('data', (c: Buffer) => (this.#bytesIn += c.length));

    const conn = this.#conn;
    if (conn.admission && !conn.admission.allowed) {
      this.#local(403, ProxyErrorReason.ADMISSION_DENIED, conn.admission.reason, conn.admission.reason);
      if (this.#stream) this.#stream.session?.close();
      return;
    }
    if (this.#method === 'CONNECT') {
      const why = this.#stream
        ? 'CONNECT over HTTP/2 (RFC 8441 WebSocket) is not supported; use HTTP/1.1 for WebSocket'
        : 'CONNECT is not supported';
      this.#local(405, ProxyErrorReason.METHOD_NOT_ALLOWED, why, why);
      return;
    }
    const verdict = authorizeRequest(this.#rt.authorization, conn.ctx, this.#authority, this.#path, this.#method, this.#h as Record<string, string | string[] | undefined>);
    if (!verdict.allowed) {
      this.#local(403, ProxyErrorReason.RBAC_DENIED, undefined, verdict.reason);
      return;
    }
    const table = this.#rt.table;
    if (conn.serverTable !== table) {
      conn.server = table.server(conn.ctx.listenerPort, conn.ctx.serverName);
      conn.serverTable = table;
    }
    const routed = table.route({
      port: conn.ctx.listenerPort,
      server: conn.server,
      authority: this.#authority,
      path: this.#path,
      method: this.#method,
      scheme: conn.scheme,
      headers: this.#h as Record<string, string | string[] | undefined>,
    });
    if (!routed) {
      this.#local(404, ProxyErrorReason.NO_ROUTE, undefined, `no route for ${this.#authority}${this.#path}`);
      return;
    }
    this.#routed = routed;
    const { plan } = routed;
    if (plan.address.port === 0) {
      this.#local(503, ProxyErrorReason.NO_UPSTREAM, undefined, `destination ${routed.destination.host} has no upstream address`);
      return;
    }
    const breaker = circuitBreakerOf(plan);
    if (breaker) {
      if (breaker.requestsFull) {
        this.#local(503, ProxyErrorReason.OVERLOADED, undefined, `${routed.destination.host} (${plan.label}): ${breaker.active} requests in flight, its DestinationRule's http2MaxRequests`);
        return;
      }
      breaker.active++;
      this.#breaker = breaker;
    }

    // Request headers, changed in place.
    const h = this.#h;
    if (this.#stream) stripPseudo(h);
    else if (h.expect !== undefined) delete h.expect; // Node's server already answered 100-continue
    stripHopByHop(h);
    appendForwardedFor(h, conn.ctx.remoteAddress);
    h['x-forwarded-proto'] = conn.scheme;
    if (conn.xfcc !== undefined) h[XFCC_HEADER] = conn.xfcc;
    else if (h[XFCC_HEADER] !== undefined) delete h[XFCC_HEADER];
    applyHeaderOps(h, routed.destination.headers?.request);
    applyHeaderOps(h, routed.route.route.headers?.request);
    const authority = routed.route.route.rewrite?.authority ?? this.#authority;

    const timeout = routed.route.route.timeout ?? this.#rt.requestTimeoutMs;
    if (timeout > 0) {
      this.#timer = setTimeout(() => this.#onTimeout(timeout), timeout);
    }
    this.#useH2 = plan.http2 === 'always' || this.#grpc || (plan.http2 === 'client' && this.#stream !== undefined);
    this.#upHeaders = h;
    this.#upAuthority = authority;
    this.#policy = retryPolicyOf(routed.route.route.retries);
    if (this.#policy && this.#hasBody) this.#keepBodyForRetries();
    this.#try();
  }

  /** One try upstream (the first, or a retry), with its per-try timeout. */
  #try(): void {
    this.#connected = false;
    this.#refusedStream = false;
    const perTry = this.#policy?.perTryTimeoutMs ?? 0;
    if (perTry > 0) this.#tryTimer = setTimeout(() => this.#onTryTimeout(perTry), perTry);
    if (this.#useH2) this.#sendH2(this.#upHeaders!, this.#upAuthority);
    else this.#sendH1(this.#upHeaders!, this.#upAuthority);
  }

  // ---- retries (VirtualService http[].retries, with Envoy's semantics)

  /** Keeps the request body (up to MAX_RETRY_BODY) so that a retry can send it again; a larger body is not retried. */
  #keepBodyForRetries(): void {
    this.#bodyCopy = [];
    this.#body.on('data', (c: Buffer) => {
      if (!this.#bodyCopy) return;
      this.#bodyCopyBytes += c.length;
      if (this.#bodyCopyBytes > MAX_RETRY_BODY) this.#bodyCopy = null;
      else this.#bodyCopy.push(c);
    });
  }

  /** Whether another try is allowed at all: attempts left, the response not started, the body still at hand. */
  #canRetry(): boolean {
    const p = this.#policy;
    if (p === null || this.#retries >= p.attempts || this.#responded || this.#done || this.#final) return false;
    if (this.#hasBody && this.#bodyCopy === null) return false;
    // maxRetries: retries in flight to this destination at once (this request's later retries count as one).
    return !(this.#breaker && !this.#retryCounted && this.#breaker.retriesFull);
  }

  /** Drops the current try (keeping the request timer) and starts the next after Envoy's jittered back-off. */
  #retry(reason: string, detach: boolean): void {
    this.#retries++;
    if (this.#breaker && !this.#retryCounted) {
      this.#breaker.retrying++;
      this.#retryCounted = true;
    }
    this.#rt.metrics?.retry(reason);
    this.#dropTry(detach);
    this.#backoffTimer = setTimeout(() => {
      this.#backoffTimer = undefined;
      if (this.#done) return;
      // The body went on arriving while no try took it: past the limit, the retry cannot send it whole.
      if (this.#hasBody && this.#bodyCopy === null) {
        this.#upstreamFailed(new UpstreamError(503, ProxyErrorReason.RESET, `upstream ${this.#routed?.plan.label}: not retried: the request body outgrew ${MAX_RETRY_BODY} bytes`));
        return;
      }
      this.#try();
    }, retryBackoffMs(this.#retries));
  }

  /** Ends the current try: destroyed, or (a response being drained) left to finish so its connection is reused. */
  #dropTry(detach: boolean): void {
    if (this.#tryTimer) {
      clearTimeout(this.#tryTimer);
      this.#tryTimer = undefined;
    }
    if (this.#hasBody) this.#body.unpipe();
    const up = this.#upReq;
    this.#upReq = undefined;
    if (up && !detach && !up.destroyed) up.destroy();
    const s = this.#upStream;
    this.#upStream = undefined;
    if (s && !s.destroyed && !s.closed) s.close(http2.constants.NGHTTP2_CANCEL);
  }

  /** The request body into a try: what was kept for retries first, then the rest as it comes. */
  #sendBody(dest: Writable): void {
    if (this.#retries > 0 && this.#bodyCopy) {
      for (const c of this.#bodyCopy) dest.write(c);
      if (this.#body.readableEnded) {
        dest.end();
        return;
      }
    }
    this.#body.pipe(dest);
  }

  #onTryTimeout(ms: number): void {
    this.#tryTimer = undefined;
    this.#upstreamFailed(new UpstreamError(504, ProxyErrorReason.TIMEOUT, `upstream ${this.#routed?.plan.label} did not answer within the per-try timeout of ${ms} ms`));
  }

  /** A response head the route's policy retries (its body is drained, not forwarded): true when a retry was started. */
  #retriedResponse(status: number, grpcStatus: string | undefined, drain: () => void): boolean {
    if (!this.#canRetry() || !retriesResponse(this.#policy!, status, grpcStatus)) return false;
    drain();
    this.#retry(grpcStatus !== undefined && grpcStatus !== '0' ? `grpc_${grpcStatus}` : String(status), true);
    return true;
  }

  // ---- upstream HTTP/1.1

  #sendH1(h: HeaderMap, authority: string): void {
    const routed = this.#routed!;
    const { plan } = routed;
    let entry;
    try {
      entry = this.#rt.pool.agent(plan, routed.poolKey);
    } catch (err) {
      this.#upstreamFailed(err);
      return;
    }
    const b = this.#breaker;
    if (b?.limits.maxPending !== undefined && plan.maxConnections !== undefined) {
      const queued = countAll(entry.agent.requests);
      if (b.pendingFull(queued, countAll(entry.agent.sockets) >= plan.maxConnections)) {
        this.#final = true;
        this.#upstreamFailed(new UpstreamError(503, ProxyErrorReason.OVERLOADED, `${routed.destination.host} (${plan.label}): ${queued} requests already wait for one of its ${plan.maxConnections} connections, its DestinationRule's http1MaxPendingRequests`));
        return;
      }
    }
    h.host = authority;
    const opts: http.RequestOptions = {
      host: plan.address.host,
      port: plan.address.port,
      method: this.#method,
      path: routed.route.upstreamPath,
      headers: h as http.OutgoingHttpHeaders,
      agent: entry.agent,
    };
    let up: ClientRequest;
    try {
      up = (entry.secure ? https : http).request(opts);
    } catch (err) {
      this.#upstreamFailed(Object.assign(err as Error, { code: 'ERR_INVALID_HTTP_TOKEN' }));
      return;
    }
    this.#upReq = up;
    const secure = entry.secure;
    up.once('socket', (s) => {
      if (up.reusedSocket) {
        this.#connected = true;
        return;
      }
      this.#connected = false;
      const t = setTimeout(
        () => up.destroy(Object.assign(new Error(`connect timeout after ${plan.connectTimeoutMs} ms`), { code: 'UPSTREAM_CONNECT_TIMEOUT' })),
        plan.connectTimeoutMs,
      );
      s.once(secure ? 'secureConnect' : 'connect', () => {
        clearTimeout(t);
        this.#connected = true;
      });
      s.once('close', () => clearTimeout(t));
    });
    up.on('response', (r) => {
      // maxRequestsPerConnection: the connection that carried its last request closes after this response.
      const perConnection = plan.maxRequestsPerConnection;
      if (perConnection !== undefined && up.socket) {
        const n = (requestsOnConnection.get(up.socket) ?? 0) + 1;
        requestsOnConnection.set(up.socket, n);
        if (n >= perConnection) up.shouldKeepAlive = false;
      }
      try {
        this.#onH1Response(r);
      } catch (err) {
        r.resume();
        this.#upstreamFailed(Object.assign(err as Error, { code: 'HPE_INVALID_HEADER_TOKEN' }));
      }
    });
    up.on('error', (err) => {
      if (this.#upReq !== up) return;
      const code = (err as NodeJS.ErrnoException).code;
      if (up.reusedSocket && !this.#responded && !this.#hasBody && !this.#retried && code === 'ECONNRESET') {
        // The upstream closed a kept-alive connection as we reused it: safe to send again once, whatever the policy.
        this.#retried = true;
        this.#rt.metrics?.retry('reused_connection_reset');
        this.#sendH1(h, authority);
        return;
      }
      this.#upstreamFailed(err);
    });
    if (this.#hasBody) this.#sendBody(up);
    else up.end();
  }

  #onH1Response(r: IncomingMessage): void {
    const h = r.headers as HeaderMap;
    if (this.#policy && this.#retriedResponse(r.statusCode ?? 502, undefined, () => r.resume())) return;
    const upgrade = r.statusCode === 101;
    if (!upgrade) stripHopByHop(h);
    this.#responseHeaderOps(h);
    r.on('error', (err) => this.#upstreamFailed(err));
    r.on('aborted', () => this.#upstreamFailed(Object.assign(new Error('upstream aborted the response'), { code: 'ECONNRESET' })));
    const wantTrailers = h.trailer !== undefined;
    const endNow = this.#method === 'HEAD' || r.statusCode === 204 || r.statusCode === 304;
    this.#respond(r.statusCode ?? 502, h, r, () => r.trailers as HeaderMap, wantTrailers, endNow);
  }

  // ---- upstream HTTP/2

  #sendH2(h: HeaderMap, authority: string): void {
    const routed = this.#routed!;
    const { plan } = routed;
    let entry;
    try {
      entry = this.#rt.pool.session(plan, routed.poolKey);
    } catch (err) {
      this.#upstreamFailed(err);
      return;
    }
    if (h.host !== undefined) delete h.host;
    h[':method'] = this.#method;
    h[':path'] = routed.route.upstreamPath;
    h[':authority'] = authority;
    h[':scheme'] = plan.tls ? 'https' : 'http';
    let s: ClientHttp2Stream;
    try {
      s = entry.session.request(h as http2.OutgoingHttpHeaders, { endStream: !this.#hasBody });
    } catch (err) {
      this.#connected = entry.connected;
      this.#upstreamFailed(err);
      return;
    }
    this.#upStream = s;
    const perConnection = plan.maxRequestsPerConnection;
    if (perConnection !== undefined) {
      // The session's last stream: no new ones on it (those open finish); the pool then opens another.
      const n = (requestsOnConnection.get(entry.session) ?? 0) + 1;
      requestsOnConnection.set(entry.session, n);
      if (n >= perConnection) {
        entry.draining = true;
        // Closed once this stream has its id: a session closed before that would refuse it.
        s.once('ready', () => entry.session.close());
      }
    }
    s.on('response', (rh, flags) => {
      this.#connected = true;
      const status = Number(rh[':status']);
      // A trailers-only response (gRPC errors): HEADERS with END_STREAM. `endAfterHeaders` is not set yet here.
      const endNow = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 || s.endAfterHeaders || this.#method === 'HEAD';
      // gRPC errors come trailers-only: their grpc-status is in this head.
      const grpcStatus = endNow && rh['grpc-status'] !== undefined ? String(rh['grpc-status']) : undefined;
      if (this.#policy && this.#retriedResponse(status, grpcStatus, () => undefined)) return;
      try {
        this.#responseHeaderOps(rh as HeaderMap);
        this.#respond(status, rh as HeaderMap, s, () => this.#upTrailers, true, endNow);
      } catch (err) {
        this.#upstreamFailed(Object.assign(err as Error, { code: 'HPE_INVALID_HEADER_TOKEN' }));
      }
    });
    s.on('trailers', (t) => (this.#upTrailers = t as HeaderMap));
    s.on('error', (err) => {
      if (this.#upStream !== s) return;
      this.#connected = entry.connected;
      this.#refusedStream = s.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
      this.#upstreamFailed(err);
    });
    s.on('close', () => {
      if (this.#upStream !== s) return;
      if (!this.#responded && !this.#done) {
        this.#connected = entry.connected;
        this.#refusedStream = s.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
        this.#upstreamFailed(Object.assign(new Error(`stream closed with code ${s.rstCode}`), { code: 'ECONNRESET' }));
      }
    });
    if (this.#hasBody) this.#sendBody(s);
  }

  // ---- downstream

  #responseHeaderOps(h: HeaderMap): void {
    const r = this.#routed!;
    applyHeaderOps(h, r.destination.headers?.response);
    applyHeaderOps(h, r.route.route.headers?.response);
  }

  /** Sends the upstream's response downstream and streams its body (and trailers) through. */
  #respond(status: number, h: HeaderMap, body: Readable, trailers: () => HeaderMap | undefined, wantTrailers: boolean, endNow: boolean): void {
    if (this.#done) {
      body.resume();
      return;
    }
    if (this.#grpc && h['grpc-status'] !== undefined) this.#grpcStatus = String(h['grpc-status']);
    const stream = this.#stream;
    if (stream) {
      if (stream.destroyed || stream.closed) {
        body.resume();
        return;
      }
      h[':status'] = status;
      stream.respond(h as http2.OutgoingHttpHeaders, { endStream: endNow, waitForTrailers: wantTrailers && !endNow });
      this.#responded = true;
      this.#status = status;
      if (this.#rt.onAccessLog) body.on('data', (c: Buffer) => (this.#bytesOut += c.length));
      if (endNow) {
        body.resume();
        return;
      }
      if (wantTrailers) {
        stream.once('wantTrailers', () => {
          const t = trailers();
          if (t?.['grpc-status'] !== undefined) this.#grpcStatus = String(t['grpc-status']);
          try {
            stream.sendTrailers((t ?? kNoTrailers) as http2.OutgoingHttpHeaders);
          } catch (err) {
            this.#failed(err);
          }
        });
      }
      body.pipe(stream);
      return;
    }
    const res = this.#res!;
    if (res.destroyed) {
      body.resume();
      return;
    }
    stripPseudo(h);
    res.writeHead(status, h as http.OutgoingHttpHeaders);
    this.#responded = true;
    this.#status = status;
    if (this.#rt.onAccessLog) body.on('data', (c: Buffer) => (this.#bytesOut += c.length));
    if (endNow) {
      res.end();
      body.resume();
      return;
    }
    body.pipe(res, { end: false });
    body.once('end', () => {
      const t = trailers();
      try {
        if (t && wantTrailers) {
          if (t['grpc-status'] !== undefined) this.#grpcStatus = String(t['grpc-status']);
          res.addTrailers(t as http.OutgoingHttpHeaders);
        }
        res.end();
      } catch (err) {
        this.#failed(err);
      }
    });
  }

  /** Answers the request locally (no route, upstream failure, denial): a short text body, or a gRPC status. */
  #local(status: number, reason: ProxyErrorReasonCode, clientDetail: string | undefined, detail: string | undefined): void {
    this.#reason = reason;
    this.#detail = detail;
    this.#rt.metrics?.localReply(reason);
    if (this.#done) return;
    const text = clientDetail && clientDetail !== REASON_TEXT[reason] ? `${REASON_TEXT[reason]}: ${clientDetail}` : REASON_TEXT[reason];
    this.#responded = true;
    const stream = this.#stream;
    if (this.#grpc) {
      const code = String(grpcStatusForHttp(status));
      this.#status = 200;
      this.#grpcStatus = code;
      const h = { 'content-type': 'application/grpc', 'grpc-status': code, 'grpc-message': grpcMessage(text), 'x-meshcert-error': reason };
      if (stream) {
        if (!stream.destroyed && !stream.closed) stream.respond({ ':status': 200, ...h }, { endStream: true });
      } else if (!this.#res!.headersSent && !this.#res!.destroyed) {
        this.#res!.writeHead(200, h).end();
      }
      this.#drainBody();
      return;
    }
    this.#status = status;
    const body = `${text}\n`;
    const h = {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-meshcert-error': reason,
      // What Envoy adds when a circuit breaker answers: load tests written for Istio look for it.
      ...(reason === ProxyErrorReason.OVERLOADED ? { 'x-envoy-overloaded': 'true' } : {}),
    };
    if (stream) {
      if (!stream.destroyed && !stream.closed) {
        stream.respond({ ':status': status, ...h });
        stream.end(body);
      }
    } else {
      const res = this.#res!;
      if (!res.headersSent && !res.destroyed) {
        if (reason === ProxyErrorReason.ADMISSION_DENIED) res.shouldKeepAlive = false;
        res.writeHead(status, h).end(body);
      }
    }
    this.#bytesOut += Buffer.byteLength(body);
    this.#drainBody();
  }

  /** Discards a request body we will not forward (so the connection can be reused). */
  #drainBody(): void {
    if (this.#hasBody && !this.#body.readableEnded) {
      this.#body.unpipe();
      this.#body.resume();
    }
  }

  #upstreamFailed(err: unknown): void {
    if (this.#done) return;
    const label = this.#routed?.plan.label ?? 'upstream';
    const e = err instanceof UpstreamError ? err : classifyUpstreamError(err, label, this.#connected);
    if (this.#canRetry() && retriesFailure(this.#policy!, e, this.#refusedStream)) {
      this.#retry(this.#refusedStream ? 'refused_stream' : e.reason, false);
      return;
    }
    this.#abortUpstream();
    if (!this.#responded) {
      this.#local(e.status, e.reason, e.clientDetail, e.message);
      return;
    }
    // The response had started: all we can do is cut the downstream stream.
    this.#reason = e.reason;
    this.#detail = e.message;
    this.#resetDownstream();
  }

  #onTimeout(ms: number): void {
    this.#timer = undefined;
    this.#final = true;
    this.#upstreamFailed(new UpstreamError(504, ProxyErrorReason.TIMEOUT, `upstream ${this.#routed?.plan.label} did not answer within ${ms} ms`));
  }

  /** Stops the request timer, the per-try timer and a pending retry. */
  #clearTimers(): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#tryTimer);
    clearTimeout(this.#backoffTimer);
    this.#timer = this.#tryTimer = this.#backoffTimer = undefined;
  }

  #abortUpstream(): void {
    this.#clearTimers();
    const up = this.#upReq;
    if (up) {
      this.#upReq = undefined;
      if (!up.destroyed) up.destroy();
    }
    const s = this.#upStream;
    if (s) {
      this.#upStream = undefined;
      if (!s.destroyed && !s.closed) s.close(http2.constants.NGHTTP2_CANCEL);
    }
  }

  #resetDownstream(): void {
    if (this.#stream) {
      if (!this.#stream.destroyed) this.#stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    } else if (this.#res && !this.#res.destroyed) {
      this.#res.destroy();
    }
  }

  /** The downstream side closed (response done, or the client went away): account and log once. */
  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearTimers();
    if (this.#breaker) {
      this.#breaker.active--;
      if (this.#retryCounted) this.#breaker.retrying--;
    }
    // HTTP/2: a stream that closed with an error code (the client's RST_STREAM, or ours) did not complete.
    const aborted = this.#stream ? (this.#stream.rstCode ?? 0) !== http2.constants.NGHTTP2_NO_ERROR : !this.#res!.writableFinished;
    if (aborted) {
      if (this.#upReq || this.#upStream) this.#abortUpstream();
      if (this.#reason === undefined) this.#reason = ProxyErrorReason.DOWNSTREAM_RESET;
    } else {
      this.#upReq = undefined;
      this.#upStream = undefined;
    }
    const ms = performance.now() - this.#t0;
    const protocol = this.#stream ? 'HTTP/2' : 'HTTP/1.1';
    this.#rt.metrics?.request(this.#status, protocol, ms / 1000);
    const log = this.#rt.onAccessLog;
    if (!log) return;
    const r = this.#routed;
    log({
      startTime: this.#startTime,
      method: this.#method,
      authority: this.#authority,
      path: this.#path,
      protocol,
      status: this.#status,
      bytesReceived: this.#bytesIn,
      bytesSent: this.#bytesOut,
      durationMs: Math.round(ms * 1000) / 1000,
      upstream: r?.plan.label,
      upstreamHost: r?.destination.host,
      route: r ? `${r.route.virtualService.name}/http[${r.route.routeIndex}]` : undefined,
      error: this.#reason,
      detail: this.#detail,
      peer: this.#conn.ctx.peer?.spiffeId,
      remoteAddress: this.#conn.ctx.remoteAddress,
      serverName: this.#conn.ctx.serverName,
      grpcStatus: this.#grpcStatus,
      retries: this.#retries,
    });
  }
}
