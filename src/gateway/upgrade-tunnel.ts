import { authorizeRequest } from './authorization.js';
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { DownstreamConnection, ExchangeRuntime } from './http-exchange.js';
import { appendForwardedFor, applyHeaderOps, stripHopByHop, type HeaderMap } from './forward-headers.js';
import { ProxyErrorReason, REASON_TEXT, classifyUpstreamError, type ProxyErrorReasonCode } from './upstream-error.js';
import { XFCC_HEADER } from './xfcc.js';

/** Writes a whole HTTP/1.1 response with a short text body on a raw socket and closes it. */
export function rawReply(socket: Socket, status: number, reason: string, text: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nx-meshcert-error: ${reason}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** An HTTP/1.1 response head from a status and raw header pairs (as IncomingMessage.rawHeaders lists them). */
export function rawHead(status: number, message: string, rawHeaders: string[]): string {
  let head = `HTTP/1.1 ${status} ${message}\r\n`;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) head += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/**
 * The upstream answered an Upgrade request without `101`: its answer goes to the client's raw socket as it came
 * (minus connection-level headers, the body close-delimited), and the connection closes after it.
 */
export function relayDeclinedUpgrade(res: IncomingMessage, socket: Socket): void {
  const relayed: string[] = [];
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    if (!/^(connection|keep-alive|transfer-encoding)$/i.test(res.rawHeaders[i]!)) relayed.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
  }
  relayed.push('connection', 'close');
  socket.write(rawHead(res.statusCode ?? 502, res.statusMessage ?? '', relayed));
  res.pipe(socket);
}

/**
 * An HTTP/1.1 Upgrade (WebSocket and others): routed like any request, sent upstream with its Upgrade and
 * Connection headers; on `101` the gateway relays the upstream's handshake answer and splices both sockets, with
 * backpressure (pipe) and the idle timeout; any other answer is relayed and the connection closed.
 */
export function proxyUpgrade(rt: ExchangeRuntime, conn: DownstreamConnection, req: IncomingMessage, socket: Socket, head: Buffer, idleMs: number): void {
  const t0 = performance.now();
  const startTime = Date.now();
  const h = req.headers as HeaderMap;
  const authority = (h.host as string | undefined) ?? '';
  const path = req.url ?? '/';
  let status = 0;
  let error: ProxyErrorReasonCode | undefined;
  let detail: string | undefined;
  let bytesIn = 0;
  let bytesOut = 0;
  let logged = false;
  const routed0 = { value: undefined as ReturnType<typeof rt.table.route> };
  const log = () => {
    if (logged) return;
    logged = true;
    const r = routed0.value;
    const ms = performance.now() - t0;
    rt.metrics?.request(status, 'HTTP/1.1', ms / 1000);
    rt.onAccessLog?.({
      startTime,
      method: req.method ?? 'GET',
      authority,
      path,
      protocol: 'HTTP/1.1',
      status,
      bytesReceived: bytesIn,
      bytesSent: bytesOut,
      durationMs: Math.round(ms * 1000) / 1000,
      upstream: r?.plan.label,
      upstreamHost: r?.destination.host,
      route: r ? `${r.route.virtualService.name}/http[${r.route.routeIndex}]` : undefined,
      error,
      detail,
      peer: conn.ctx.peer?.spiffeId,
      remoteAddress: conn.ctx.remoteAddress,
      serverName: conn.ctx.serverName,
      grpcStatus: undefined,
      retries: 0,
    });
  };
  const fail = (code: number, reason: ProxyErrorReasonCode, text: string, why?: string) => {
    status = code;
    error = reason;
    detail = why;
    rt.metrics?.localReply(reason);
    rawReply(socket, code, reason, text);
    log();
  };
  socket.on('error', () => undefined);

  if (conn.admission && !conn.admission.allowed) {
    fail(403, ProxyErrorReason.ADMISSION_DENIED, `${REASON_TEXT.admission_denied}: ${conn.admission.reason}`, conn.admission.reason);
    return;
  }
  const verdict = authorizeRequest(rt.authorization, conn.ctx, authority, path, req.method ?? 'GET', h as Record<string, string | string[] | undefined>);
  if (!verdict.allowed) {
    fail(403, ProxyErrorReason.RBAC_DENIED, REASON_TEXT.rbac_access_denied, verdict.reason);
    return;
  }
  const table = rt.table;
  if (conn.serverTable !== table) {
    conn.server = table.server(conn.ctx.listenerPort, conn.ctx.serverName);
    conn.serverTable = table;
  }
  const routed = table.route({
    port: conn.ctx.listenerPort,
    server: conn.server,
    authority,
    path,
    method: req.method ?? 'GET',
    scheme: conn.scheme,
    headers: h as Record<string, string | string[] | undefined>,
  });
  routed0.value = routed;
  if (!routed) {
    fail(404, ProxyErrorReason.NO_ROUTE, REASON_TEXT.no_route, `no route for ${authority}${path}`);
    return;
  }
  const { plan } = routed;
  if (plan.address.port === 0) {
    fail(503, ProxyErrorReason.NO_UPSTREAM, REASON_TEXT.no_healthy_upstream);
    return;
  }
  stripHopByHop(h, true);
  appendForwardedFor(h, conn.ctx.remoteAddress);
  h['x-forwarded-proto'] = conn.scheme;
  if (conn.xfcc !== undefined) h[XFCC_HEADER] = conn.xfcc;
  else if (h[XFCC_HEADER] !== undefined) delete h[XFCC_HEADER];
  applyHeaderOps(h, routed.destination.headers?.request);
  applyHeaderOps(h, routed.route.route.headers?.request);
  h.host = routed.route.route.rewrite?.authority ?? authority;

  let entry;
  try {
    entry = rt.pool.agent(plan, routed.poolKey);
  } catch (err) {
    const e = classifyUpstreamError(err, plan.label, false);
    fail(e.status, e.reason, REASON_TEXT[e.reason], e.message);
    return;
  }
  let connected = false;
  let up: ClientRequest;
  try {
    up = (entry.secure ? https : http).request({
      host: plan.address.host,
      port: plan.address.port,
      method: req.method,
      path: routed.route.upstreamPath,
      headers: h as http.OutgoingHttpHeaders,
      agent: entry.agent,
    });
  } catch (err) {
    fail(400, ProxyErrorReason.BAD_REQUEST, REASON_TEXT.bad_request, (err as Error).message);
    return;
  }
  const timer = setTimeout(() => up.destroy(Object.assign(new Error(`connect timeout after ${plan.connectTimeoutMs} ms`), { code: 'UPSTREAM_CONNECT_TIMEOUT' })), plan.connectTimeoutMs);
  up.once('socket', (s) => {
    if (up.reusedSocket) {
      connected = true;
      clearTimeout(timer);
      return;
    }
    s.once(entry.secure ? 'secureConnect' : 'connect', () => {
      connected = true;
      clearTimeout(timer);
    });
  });
  socket.once('close', () => {
    clearTimeout(timer);
    if (status === 0) {
      error = ProxyErrorReason.DOWNSTREAM_RESET;
      up.destroy();
      log();
    }
  });
  up.on('error', (err) => {
    clearTimeout(timer);
    if (status !== 0) return;
    const e = classifyUpstreamError(err, plan.label, connected);
    fail(e.status, e.reason, e.clientDetail ? `${REASON_TEXT[e.reason]}: ${e.clientDetail}` : REASON_TEXT[e.reason], e.message);
  });
  up.on('response', (res) => {
    clearTimeout(timer);
    // The upstream refused the upgrade: relay its answer and close.
    status = res.statusCode ?? 502;
    res.on('data', (c: Buffer) => (bytesOut += c.length));
    relayDeclinedUpgrade(res, socket);
    res.once('end', log);
  });
  up.on('upgrade', (res, upSocket, upHead) => {
    clearTimeout(timer);
    status = 101;
    socket.write(rawHead(101, res.statusMessage ?? 'Switching Protocols', res.rawHeaders));
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    upSocket.on('error', () => socket.destroy());
    socket.on('error', () => upSocket.destroy());
    socket.on('data', (c: Buffer) => (bytesIn += c.length));
    upSocket.on('data', (c: Buffer) => (bytesOut += c.length));
    socket.pipe(upSocket);
    upSocket.pipe(socket);
    socket.setTimeout(idleMs > 0 ? idleMs : 0, () => socket.destroy());
    const end = () => {
      socket.destroy();
      upSocket.destroy();
      log();
    };
    socket.once('close', end);
    upSocket.once('close', end);
  });
  up.end();
}
