import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { TLSSocket, createSecureContext, type SecureContext } from 'node:tls';
import { ErrorCodes, MeshError, describeError, isMeshError, silentLogger, systemClock, type Clock, type Logger } from '../core/index.js';
import { readClientHello } from '../gateway/index.js';
import type { KeyType } from '../pki/index.js';
import { AuditLog, noAudit, type AuditSink } from './audit-log.js';
import { untrustedCa, type BumpCa } from './bump-ca.js';
import type { BumpFilter } from './bump-filters.js';
import { BumpMetrics } from './bump-metrics.js';
import { HttpBridge } from './http-bridge.js';
import { KeyPool } from './key-pool.js';
import { MimicMinter, type MimicCertificate } from './mimic-minter.js';
import { LruCache } from './mimic-cache.js';
import { UpstreamHost } from './upstream-pool.js';
import { SpliceRules, type SpliceRulesOptions } from './splice-rules.js';
import { connectUpstreamRaw, connectUpstreamTls, fixedAddressResolver, type UpstreamResolver } from './upstream-connector.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface BumpProxyOptions {
  /** Explicit proxy: CONNECT and plain-HTTP forward proxying. */
  listen?: HostPort;
  /** Transparent TLS: connections that start with a ClientHello; the SNI names the upstream. */
  transparentListen?: HostPort;
  /** /metrics and /healthz. */
  admin?: HostPort;
  ca: BumpCa;
  upstream?: {
    /** Trusted CAs for upstream servers (PEM); undefined = Node's bundled roots. */
    caPem?: string;
    /** "host:port" → "address:port" (tests, fixed egress addresses). */
    resolve?: Record<string, string>;
    onInvalidCertificate?: 'mimic-error' | 'refuse';
    connectTimeoutMs?: number;
    /** The upstream port of transparent connections (default 443). */
    transparentPort?: number;
    /**
     * How long a verified upstream handshake lets new client connections to the same host skip their own (the mimic
     * comes from the cache, requests go over the host's pooled, verified connections); 0 = one per client connection.
     */
    reuseVerifiedForMs?: number;
  };
  splice?: SpliceRulesOptions;
  filters?: BumpFilter[];
  /** JSON-lines audit file. */
  auditLog?: string;
  mimic?: { cacheSize?: number; maxValidityMs?: number; keyPoolSize?: number; prefillKeyTypes?: KeyType[] };
  clientHelloTimeoutMs?: number;
  idleTimeoutMs?: number;
  logger?: Logger;
  clock?: Clock;
}

function listenOn(server: NetServer | HttpServer, at: HostPort): Promise<string> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(new MeshError(ErrorCodes.UNAVAILABLE, `cannot listen on ${at.host}:${at.port}: ${err.message}`, { subject: `${at.host}:${at.port}`, cause: err }));
    server.once('error', onError);
    server.listen(at.port, at.host, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      resolve(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
    });
  });
}

function closeServer(server: NetServer | HttpServer | undefined): Promise<void> {
  if (!server?.listening) return Promise.resolve();
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * The TLS-bumping egress proxy. Per connection: read the ClientHello (SNI, ALPN) without consuming it; splice
 * (raw tunnel) or bump by the rules; to bump, connect upstream first with that SNI and those ALPN offers, verify it,
 * mint (or take from the cache) a mimic of its certificate, then start TLS towards the client with the mimic and the
 * protocol the upstream chose, and pass the decrypted HTTP through the filters.
 */
export class BumpProxy {
  readonly metrics: BumpMetrics;
  readonly minter: MimicMinter;
  readonly keyPool: KeyPool;
  readonly addresses: { listen?: string; transparent?: string; admin?: string } = {};
  readonly #o: BumpProxyOptions;
  readonly #log: Logger;
  readonly #rules: SpliceRules;
  readonly #resolve: UpstreamResolver;
  readonly #audit: AuditSink;
  readonly #bridge: HttpBridge;
  readonly #upstreamContext: SecureContext;
  /** Upstream connections per host (SNI, port, ALPN offered), shared by the client connections bumped for it. */
  readonly #hosts = new LruCache<UpstreamHost>(10_000, (host) => host.close());
  readonly #reuseVerifiedMs: number;
  readonly #sockets = new Set<Socket>();
  #explicit?: HttpServer;
  #transparent?: NetServer;
  #admin?: HttpServer;
  #stopped = false;

  private constructor(options: BumpProxyOptions, untrusted: BumpCa) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
    this.#rules = new SpliceRules(options.splice);
    this.#resolve = fixedAddressResolver(options.upstream?.resolve);
    this.#reuseVerifiedMs = options.upstream?.reuseVerifiedForMs ?? 60_000;
    this.#upstreamContext = createSecureContext(options.upstream?.caPem ? { ca: options.upstream.caPem } : {});
    this.keyPool = new KeyPool({
      size: options.mimic?.keyPoolSize ?? 8,
      prefill: options.mimic?.prefillKeyTypes ?? ['ec-p256', 'rsa-2048'],
      onGenerated: (type) => this.metrics?.keysGenerated.inc({ key_type: type }),
    });
    this.minter = new MimicMinter({
      ca: options.ca,
      untrustedCa: untrusted,
      keyPool: this.keyPool,
      cacheSize: options.mimic?.cacheSize ?? 10_000,
      maxValidityMs: options.mimic?.maxValidityMs ?? 7 * 86_400_000,
      clock: options.clock ?? systemClock,
    });
    this.metrics = new BumpMetrics(() => this.minter.cache.size);
    this.#audit = options.auditLog ? new AuditLog(options.auditLog, (err) => this.#log.error({ err: err.message, file: options.auditLog }, 'audit log write failed')) : noAudit;
    this.#bridge = new HttpBridge({
      filters: options.filters ?? [],
      audit: this.#audit,
      metrics: this.metrics,
      logger: this.#log,
      resolve: this.#resolve,
      idleTimeoutMs: options.idleTimeoutMs ?? 120_000,
    });
  }

  static async start(options: BumpProxyOptions): Promise<BumpProxy> {
    const proxy = new BumpProxy(options, await untrustedCa(options.clock));
    try {
      await proxy.#listen();
    } catch (err) {
      await proxy.stop();
      throw err;
    }
    return proxy;
  }

  async #listen(): Promise<void> {
    const o = this.#o;
    if (o.listen) {
      const server = createHttpServer({ requestTimeout: 60_000 }, (req, res) => {
        this.#bridge.forward(req, res).catch((err: unknown) => this.#unexpected(err, res.socket ?? undefined));
      });
      server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => this.#onConnect(req, socket, head));
      server.on('clientError', (_err, socket) => {
        this.metrics.clientErrors.inc({ reason: 'bad-http' });
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nmeshcert bump: malformed HTTP request\n');
        else socket.destroy();
      });
      this.#explicit = server;
      this.addresses.listen = await listenOn(server, o.listen);
    }
    if (o.transparentListen) {
      const server = createNetServer((socket) => {
        this.#track(socket);
        this.#handleTls(socket, undefined, o.upstream?.transparentPort ?? 443).catch((err: unknown) => this.#unexpected(err, socket));
      });
      this.#transparent = server;
      this.addresses.transparent = await listenOn(server, o.transparentListen);
    }
    if (o.admin) {
      const server = createHttpServer((req, res) => {
        this.#adminRequest(req, res).catch((err: unknown) => this.#unexpected(err, res.socket ?? undefined));
      });
      this.#admin = server;
      this.addresses.admin = await listenOn(server, o.admin);
    }
  }

  async #adminRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/healthz') {
      const caOk = this.#o.ca.cert.notAfter > (this.#o.clock ?? systemClock).now();
      res.writeHead(caOk && !this.#stopped ? 200 : 503, { 'content-type': 'text/plain' }).end(caOk ? 'ok\n' : 'bumping CA expired\n');
    } else if (path === '/metrics') {
      try {
        const body = await this.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(body);
      } catch (err) {
        res.writeHead(500).end(describeError(err));
      }
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /metrics, /healthz\n');
    }
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
  }

  #onConnect(req: IncomingMessage, socket: Socket, head: Buffer): void {
    this.#track(socket);
    const target = req.url ?? '';
    const m = /^(?:\[([^\]]+)\]|([^:/\s]+)):(\d{1,5})$/.exec(target);
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) {
      this.metrics.clientErrors.inc({ reason: 'bad-connect' });
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nmeshcert bump: CONNECT needs host:port, got "${target}"\n`);
      return;
    }
    const host = (m[1] ?? m[2])!.toLowerCase();
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) socket.unshift(head);
    this.#handleTls(socket, host, port).catch((err: unknown) => this.#unexpected(err, socket));
  }

  /** A bug, not bad input: logged with its stack, and only this connection is closed. */
  #unexpected(err: unknown, socket: Socket | undefined): void {
    this.#log.error({ err: describeError(err), stack: (err as Error)?.stack }, 'bump: unexpected error; connection closed');
    socket?.destroy();
  }

  #clientLabel(socket: Socket): string {
    return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  }

  #fail(socket: Socket, client: string, sni: string | null, err: unknown, counter: () => void): void {
    counter();
    const message = describeError(err);
    this.#log.info({ client, sni, code: isMeshError(err) ? err.code : undefined, err: message }, 'bump: connection refused');
    this.#audit.write({ event: isMeshError(err, ErrorCodes.BUMP_UPSTREAM_CERTIFICATE) ? 'refused' : 'error', client, sni, reason: message });
    socket.destroy();
  }

  /** One client connection that should begin with a ClientHello (after CONNECT, or on the transparent port). */
  async #handleTls(socket: Socket, connectHost: string | undefined, port: number): Promise<void> {
    const client = this.#clientLabel(socket);
    const mode = connectHost === undefined ? 'transparent' : 'connect';
    let hello;
    try {
      ({ hello } = await readClientHello(socket, { timeoutMs: this.#o.clientHelloTimeoutMs ?? 10_000, peer: client }));
    } catch (err) {
      this.#fail(socket, client, connectHost ?? null, err, () => this.metrics.clientErrors.inc({ reason: 'client-hello' }));
      return;
    }
    const serverName = hello.serverName ?? connectHost;
    if (!serverName) {
      const err = new MeshError(
        ErrorCodes.BUMP_NO_SERVER_NAME,
        `ClientHello from ${client} on the transparent port has no SNI, so the upstream is unknown; refusing the connection`,
        { subject: client },
      );
      this.#fail(socket, client, null, err, () => this.metrics.clientErrors.inc({ reason: 'no-sni' }));
      return;
    }
    if (this.#rules.actionFor(serverName) === 'splice') {
      await this.#splice(socket, client, serverName, port, mode);
      return;
    }
    await this.#bump(socket, client, serverName, port, hello.alpnProtocols, mode);
  }

  async #splice(socket: Socket, client: string, serverName: string, port: number, mode: string): Promise<void> {
    let upstream: Socket;
    try {
      upstream = await connectUpstreamRaw(serverName, port, this.#resolve, this.#o.upstream?.connectTimeoutMs ?? 10_000);
    } catch (err) {
      this.#fail(socket, client, serverName, err, () => this.metrics.upstreamErrors.inc({ stage: 'connect' }));
      this.metrics.connections.inc({ mode: 'spliced', result: 'upstream-error' });
      return;
    }
    this.#track(upstream);
    this.metrics.connections.inc({ mode: 'spliced', result: 'ok' });
    let bytes = 0;
    socket.on('data', (c: Buffer) => (bytes += c.length));
    upstream.on('data', (c: Buffer) => (bytes += c.length));
    socket.pipe(upstream);
    upstream.pipe(socket);
    const end = (): void => {
      socket.destroy();
      upstream.destroy();
    };
    socket.once('close', end);
    upstream.once('close', end);
    socket.once('close', () => this.#audit.write({ event: 'splice', client, sni: serverName, bytes, mode, url: `${serverName}:${port}` }));
    socket.resume();
  }

  async #bump(socket: Socket, client: string, serverName: string, port: number, alpnOffered: string[], mode: string): Promise<void> {
    const o = this.#o;
    const alpn = alpnOffered.filter((p) => p === 'h2' || p === 'http/1.1');
    const connect = (offer: string[]): ReturnType<typeof connectUpstreamTls> =>
      connectUpstreamTls({ serverName, port, resolve: this.#resolve, alpnProtocols: offer, secureContext: this.#upstreamContext, timeoutMs: o.upstream?.connectTimeoutMs ?? 10_000 });
    const hostKey = `${serverName}:${port}|${alpn.join(',')}`;
    let host = this.#hosts.get(hostKey);
    if (!host) {
      host = new UpstreamHost(`${serverName}:${port}`, connect);
      this.#hosts.set(hostKey, host);
    }
    // A host verified moments ago by another client connection: its mimic is in the cache and its connections in
    // the pool, so this connection needs no upstream handshake of its own.
    let mimic: MimicCertificate | undefined;
    let alpnChosen: string | false = false;
    let trusted = true;
    const verdict = host.freshVerdict(Date.now(), this.#reuseVerifiedMs);
    if (verdict) {
      mimic = this.minter.lookup(verdict.fingerprint, serverName, true);
      alpnChosen = verdict.alpn;
    }
    if (mimic) {
      this.metrics.mimicCache.inc({ result: 'hit' });
      this.metrics.upstreamHandshakes.inc({ result: 'reused' });
    } else {
      let up;
      try {
        up = await connect(alpn);
      } catch (err) {
        this.#fail(socket, client, serverName, err, () => this.metrics.upstreamErrors.inc({ stage: 'handshake' }));
        this.metrics.connections.inc({ mode: 'bumped', result: 'upstream-error' });
        return;
      }
      this.metrics.upstreamHandshakes.inc({ result: 'new' });
      this.#track(up.socket);
      if (socket.destroyed) {
        up.socket.destroy();
        return;
      }
      if (up.problem) {
        this.metrics.upstreamVerifyFailures.inc({ reason: up.problem.reason });
        if ((o.upstream?.onInvalidCertificate ?? 'mimic-error') === 'refuse') {
          up.socket.destroy();
          const err = new MeshError(ErrorCodes.BUMP_UPSTREAM_CERTIFICATE, `upstream ${serverName}:${port}: ${up.problem.message}; refused (upstream.onInvalidCertificate: refuse)`, {
            subject: serverName,
          });
          this.#fail(socket, client, serverName, err, () => this.metrics.connections.inc({ mode: 'bumped', result: 'refused' }));
          return;
        }
        this.#log.info({ client, sni: serverName, problem: up.problem.message }, 'bump: upstream certificate invalid; mimicking the error with an untrusted CA');
        // Never pooled: a client that goes on anyway (curl -k) gets connections of its own, not verified ones.
        const invalid = up;
        host = new UpstreamHost(`${serverName}:${port}`, connect, { acceptInvalid: true });
        host.adopt(invalid);
        const own = host;
        socket.once('close', () => own.close());
      }
      trusted = up.problem === null;
      alpnChosen = up.alpn;
      try {
        const res = await this.minter.mimicFor(up.cert, serverName, trusted);
        mimic = res.mimic;
        this.metrics.mimicCache.inc({ result: res.cached ? 'hit' : 'miss' });
        if (res.mintMs !== undefined) this.metrics.mintSeconds.observe({ key_type: mimic.keyType }, res.mintMs / 1000);
      } catch (err) {
        up.socket.destroy();
        this.#fail(socket, client, serverName, err, () => this.metrics.connections.inc({ mode: 'bumped', result: 'mint-error' }));
        return;
      }
      if (trusted) host.adopt(up);
    }
    if (socket.destroyed) return;
    const tls = new TLSSocket(socket, {
      isServer: true,
      secureContext: mimic.context,
      ALPNProtocols: alpnChosen ? [alpnChosen] : undefined,
      requestCert: false,
      rejectUnauthorized: false,
    });
    this.#track(tls);
    let secure = false;
    tls.setTimeout(o.clientHelloTimeoutMs ?? 10_000, () => {
      if (!secure) tls.destroy();
    });
    const serial = mimic.serial;
    tls.on('error', (err: Error) => {
      if (secure) return;
      this.metrics.connections.inc({ mode: 'bumped', result: 'client-handshake-failed' });
      this.#audit.write({ event: 'error', client, sni: serverName, mimicSerial: serial, reason: `client TLS handshake failed: ${err.message}` });
    });
    const upstream = host;
    tls.once('secure', () => {
      secure = true;
      tls.setTimeout(0);
      this.metrics.connections.inc({ mode: 'bumped', result: trusted ? 'ok' : 'mimic-error' });
      this.#bridge.serveBumped(tls, { client, serverName, port, mimicSerial: serial, upstream });
    });
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.keyPool.close();
    const closing = [closeServer(this.#explicit), closeServer(this.#transparent), closeServer(this.#admin)];
    this.#explicit?.closeAllConnections();
    this.#admin?.closeAllConnections();
    for (const s of this.#sockets) s.destroy();
    this.#bridge.close();
    this.#hosts.clear();
    await Promise.all(closing);
    await this.#audit.close();
  }
}
