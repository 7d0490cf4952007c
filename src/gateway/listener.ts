// One gateway port: accept, read the ClientHello first (Envoy's tls_inspector pattern), pick the server by SNI, and
// only then start TLS with that server's full settings — its own tls.Server (which never listens itself) with its
// certificate, TLS versions, ciphers, curves, signature algorithms, client-certificate request and OCSP stapling —
// or splice the bytes to an upstream for PASSTHROUGH. Plain HTTP ports hand the socket to the proxy at once.
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { Server as TlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import { describeError, isMeshError, silentLogger, ErrorCodes, MeshError, type Logger } from '../core/index.js';
import { readClientHello, type ClientHello } from './client-hello.js';
import type { Admission, ConnectionContext, ConnectionHandler } from './connection-context.js';
import type { CredentialStore, ServingCredential, ValidationCredential } from './credential-store.js';
import type { GatewayMetrics } from './gateway-metrics.js';
import { splice, type SpliceTarget } from './passthrough.js';
import { verifyPeer } from './peer-verifier.js';
import { ServerSelector } from './server-selector.js';
import type { StaplingCache } from './stapling.js';
import { nodeTlsSettings, type TlsSettingsInput } from './tls-settings.js';

/** PLAIN: HTTP without TLS (to the proxy); TCP: bytes to the port's tcp route; the rest are Istio's TLS modes. */
export type ServerMode = 'PLAIN' | 'TCP' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL' | 'PASSTHROUGH';

/** One Gateway server as the listener runs it (built from the config by gateway-plan.ts). */
export interface ServerPlan {
  /** "GATEWAY/servers[i]" (or the server's name), for logs and /config_dump. */
  id: string;
  gateway: string;
  port: number;
  protocol: string;
  hosts: string[];
  mode: ServerMode;
  /** The serving credential (credentialName, or `default` for ISTIO_MUTUAL). */
  credentialName?: string | undefined;
  /** The validation credential (credentialName's CA side for MUTUAL, `ROOTCA` for ISTIO_MUTUAL). */
  validationName?: string | undefined;
  tls: TlsSettingsInput;
  subjectAltNames?: string[] | undefined;
  onlyVerifyLeafCertCrl: boolean;
  trustDomain?: string | undefined;
  /** ALPN offered after termination: h2 and http/1.1 for HTTPS servers; none for TLS (TCP) servers. */
  alpn: string[] | undefined;
}

export interface PortPlan {
  port: number;
  bind: string;
  servers: ServerPlan[];
}

export interface ListenerDeps {
  store: CredentialStore;
  stapling: StaplingCache;
  metrics: GatewayMetrics;
  logger?: Logger;
  /** Where connection records go (one per connection: accepted, refused and why); none when it returns undefined. */
  accessLog?: (() => Logger | undefined) | undefined;
  handler: ConnectionHandler;
  handshakeTimeoutMs: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /**
   * Issue #9's asynchronous validators: called once per connection whose client certificate passed the
   * synchronous checks; the verdict goes to the proxy in `ctx.admission`. Undefined (or returning undefined) = none.
   */
  admit?: ((server: ServerPlan, ctx: ConnectionContext) => Promise<Admission> | undefined) | undefined;
  /** Where a PASSTHROUGH (by SNI) or terminated TLS/TCP server's bytes go; undefined = no route. */
  routeTcp(server: ServerPlan, serverName: string | undefined): { target: SpliceTarget; destination: string } | { error: string };
}

/** The TLS side of one server, rebuilt when its credentials or settings change. */
interface Terminator {
  plan: ServerPlan;
  tlsServer: TlsServer | null;
  serving: ServingCredential | null;
  validation: ValidationCredential | null;
  /** Why there is no tlsServer. */
  problem: string | null;
  warnings: string[];
}

/** TLS alert descriptions (RFC 8446 §6). */
const ALERT = { HANDSHAKE_FAILURE: 40, INTERNAL_ERROR: 80, UNRECOGNIZED_NAME: 112 } as const;

/** A fatal alert as a plaintext TLS record, for refusals decided before TLS starts. */
function alertRecord(description: number): Buffer {
  return Buffer.from([21, 3, 3, 0, 2, 2, description]);
}

function tlsErrorReason(err: Error & { code?: string }): string {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake_timeout';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'connection_reset';
  if (code.startsWith('ERR_SSL_')) return code.slice('ERR_SSL_'.length).toLowerCase();
  const m = /alert number (\d+)/.exec(err.message);
  if (m) return `alert_${m[1]}`;
  return code ? code.toLowerCase() : 'tls_error';
}

export class PortListener {
  #plan: PortPlan;
  readonly #deps: ListenerDeps;
  readonly #logger: Logger;
  readonly #server: NetServer;
  readonly #sockets = new Set<Socket>();
  #selector: ServerSelector<ServerPlan>;
  #terminators = new Map<string, Terminator>();
  #plain: boolean;
  #tcp: boolean;

  constructor(plan: PortPlan, deps: ListenerDeps) {
    this.#plan = plan;
    this.#deps = deps;
    this.#logger = deps.logger ?? silentLogger;
    this.#selector = new ServerSelector(plan.servers);
    this.#plain = plan.servers.every((s) => s.mode === 'PLAIN');
    this.#tcp = plan.servers.length > 0 && plan.servers.every((s) => s.mode === 'TCP');
    this.#server = createServer({ pauseOnConnect: true }, (sock) => this.#accept(sock));
    this.#server.on('error', (err) => this.#logger.error({ port: plan.port, err: describeError(err) }, 'listener error'));
    this.rebuild();
  }

  get plan(): PortPlan {
    return this.#plan;
  }

  /** Binds `port` (default: the plan's port; tests pass 0). */
  listen(port = this.#plan.port): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const where = `${this.#plan.bind}:${port}`;
      const servers = this.#plan.servers.map((s) => s.id).join(', ');
      const onError = (err: Error & { code?: string }) =>
        reject(new MeshError(ErrorCodes.UNAVAILABLE, `cannot listen on ${where} for ${servers}: ${err.code ?? err.message}`, { subject: where, cause: err }));
      this.#server.once('error', onError);
      this.#server.listen({ port, host: this.#plan.bind }, () => {
        this.#server.off('error', onError);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  get address(): AddressInfo | null {
    return (this.#server.address() as AddressInfo | null) ?? null;
  }

  get connectionCount(): number {
    return this.#sockets.size;
  }

  /** New servers, hosts or settings for this port: used by new connections; open ones keep theirs. */
  update(plan: PortPlan): void {
    this.#plan = plan;
    this.#selector = new ServerSelector(plan.servers);
    this.#plain = plan.servers.every((s) => s.mode === 'PLAIN');
    this.#tcp = plan.servers.length > 0 && plan.servers.every((s) => s.mode === 'TCP');
    this.rebuild();
  }

  /** Re-reads credentials and rebuilds every TLS context (after a certificate, key, staple, CA or CRL change). */
  rebuild(): void {
    const next = new Map<string, Terminator>();
    for (const s of this.#plan.servers) {
      if (s.mode === 'PLAIN' || s.mode === 'TCP' || s.mode === 'PASSTHROUGH') continue;
      const prev = this.#terminators.get(s.id);
      next.set(s.id, this.#terminator(s, prev));
    }
    this.#terminators = next;
  }

  /** Stops accepting; with `destroy`, closes open connections too (else they run to their end). */
  close(destroy = false): Promise<void> {
    return new Promise((resolve) => {
      if (destroy) for (const s of this.#sockets) s.destroy();
      if (!this.#server.listening) {
        resolve();
        return;
      }
      this.#server.close(() => resolve());
      if (!destroy) resolve();
    });
  }

  /** For /config_dump. */
  describe(): Array<Record<string, unknown>> {
    return this.#plan.servers.map((s) => {
      const t = this.#terminators.get(s.id);
      return {
        id: s.id,
        port: s.port,
        protocol: s.protocol,
        hosts: s.hosts,
        mode: s.mode,
        ...(s.credentialName ? { credentialName: s.credentialName } : {}),
        ...(s.validationName ? { validationName: s.validationName } : {}),
        tls: s.tls,
        ...(t ? { ready: t.tlsServer !== null, ...(t.problem ? { problem: t.problem } : {}), ...(t.warnings.length ? { warnings: t.warnings } : {}) } : {}),
      };
    });
  }

  #terminator(plan: ServerPlan, prev: Terminator | undefined): Terminator {
    const store = this.#deps.store;
    const serving = plan.credentialName ? (store.serving(plan.credentialName) ?? null) : null;
    const mutual = plan.mode === 'MUTUAL' || plan.mode === 'ISTIO_MUTUAL';
    const validation = mutual && plan.validationName ? (store.validation(plan.validationName) ?? null) : null;
    // Unchanged inputs: keep the server (and its session ticket keys).
    if (prev && prev.plan === plan && prev.serving === serving && prev.validation === validation && prev.tlsServer) return prev;
    const base = { plan, serving, validation, warnings: [] as string[] };
    if (!serving) {
      const why = plan.credentialName ? store.status(plan.credentialName, 'serving').reason : 'no credentialName';
      return { ...base, tlsServer: null, problem: `no certificate for ${plan.credentialName ?? '?'}: ${why ?? 'missing'}` };
    }
    if (mutual && !validation) {
      const why = plan.validationName ? store.status(plan.validationName, 'validation').reason : 'no CA';
      return { ...base, tlsServer: null, problem: `no CA certificates to verify clients (${plan.validationName ?? '?'}): ${why ?? 'missing'}` };
    }
    try {
      const settings = nodeTlsSettings(plan.tls);
      const options: TlsOptions = {
        ...settings.options,
        key: serving.keyPem,
        cert: serving.certPem,
        handshakeTimeout: this.#deps.handshakeTimeoutMs,
        ...(plan.alpn ? { ALPNProtocols: plan.alpn } : {}),
      };
      if (mutual && validation) {
        options.requestCert = true;
        options.rejectUnauthorized = false;
        options.ca = validation.caPem;
        // Envoy's default: CRLs for the whole chain (OpenSSL CRL_CHECK_ALL: a CA without a CRL fails). Leaf-only is ours.
        // One PEM per CRL: Node reads only the first CRL of a string.
        if (validation.crls.length > 0 && !plan.onlyVerifyLeafCertCrl) options.crl = validation.crls.map((c) => c.pem);
      }
      const server = new TlsServer(options);
      this.#wire(server, plan, serving, validation);
      return { ...base, tlsServer: server, problem: null, warnings: settings.warnings };
    } catch (err) {
      const problem = `TLS settings of ${plan.id} (credential ${serving.name}) refused by Node: ${describeError(err)}`;
      this.#logger.error({ server: plan.id, err: describeError(err) }, 'cannot build the TLS context');
      return { ...base, tlsServer: null, problem };
    }
  }

  #wire(server: TlsServer, plan: ServerPlan, serving: ServingCredential, validation: ValidationCredential | null): void {
    const { metrics, stapling } = this.#deps;
    // XFCC's By=: the gateway's own URI SANs (its SPIFFE ID on ISTIO_MUTUAL servers), once per certificate.
    const uris = serving.chain[0]!.sans.uri;
    const localUriSans = uris.length > 0 ? [...uris] : undefined;
    server.on('OCSPRequest', (_cert: Buffer, _issuer: Buffer | null, cb: (err: Error | null, resp?: Buffer) => void) => {
      let st;
      try {
        st = stapling.decide(serving);
      } catch (err) {
        this.#logger.error({ server: plan.id, err: describeError(err) }, 'stapling verdict failed; no staple sent');
        metrics.staples.inc({ result: 'omitted' });
        cb(null);
        return;
      }
      if (st.action === 'staple' && st.staple) {
        metrics.staples.inc({ result: 'served' });
        cb(null, st.staple);
      } else {
        metrics.staples.inc({ result: 'omitted' });
        cb(null);
      }
    });
    server.on('tlsClientError', (err: Error & { code?: string }, sock: TLSSocket) => {
      const reason = tlsErrorReason(err);
      metrics.handshakeFailed(plan.port, reason);
      this.#access({ port: plan.port, server: plan.id, result: 'handshake_failed', reason, detail: err.message, remote: sock?.remoteAddress });
      sock?.destroy();
    });
    server.on('secureConnection', (sock: TLSSocket) => {
      try {
        this.#secured(sock, plan, validation, localUriSans);
      } catch (err) {
        this.#logger.error({ server: plan.id, err: describeError(err) }, 'connection setup failed');
        sock.destroy();
      }
    });
  }

  #access(record: Record<string, unknown>): void {
    this.#deps.accessLog?.()?.info({ ...record, type: 'connection' }, 'connection');
  }

  #refuse(sock: Socket, port: number, reason: string, detail: string, alert: number | null, extra: Record<string, unknown> = {}): void {
    this.#deps.metrics.handshakeFailed(port, reason);
    this.#access({ port, result: 'refused', reason, detail, remote: sock.remoteAddress, ...extra });
    if (alert !== null && !sock.destroyed) {
      sock.end(alertRecord(alert));
      setTimeout(() => sock.destroy(), 1000).unref();
    } else sock.destroy();
  }

  #accept(sock: Socket): void {
    const port = this.#plan.port;
    const deps = this.#deps;
    this.#sockets.add(sock);
    deps.metrics.activeConnections.inc({ port: String(port) });
    sock.on('error', () => undefined); // every owner below handles its own; a reset must never crash the gateway
    sock.once('close', () => {
      this.#sockets.delete(sock);
      deps.metrics.activeConnections.dec({ port: String(port) });
    });
    if (this.#tcp) {
      deps.metrics.connections.inc({ port: String(port), mode: 'TCP' });
      this.#splice(sock, this.#plan.servers[0]!, undefined, 'tcp');
      return;
    }
    if (this.#plain) {
      deps.metrics.connections.inc({ port: String(port), mode: 'PLAIN' });
      sock.resume();
      const s = this.#plan.servers;
      deps.handler.handle(sock, {
        listenerPort: port,
        serverHosts: s.flatMap((x) => x.hosts),
        serverName: undefined,
        alpn: false,
        tlsVersion: undefined,
        remoteAddress: sock.remoteAddress ?? '',
        remotePort: sock.remotePort ?? 0,
        peer: undefined,
        admission: undefined,
      });
      return;
    }
    readClientHello(sock, { timeoutMs: deps.handshakeTimeoutMs })
      .then(
        ({ hello }) => this.#route(sock, hello),
        (err: unknown) => {
          const timeout = isMeshError(err, ErrorCodes.CLIENT_HELLO_TIMEOUT);
          this.#refuse(sock, port, timeout ? 'client_hello_timeout' : 'client_hello', describeError(err), null);
        },
      )
      .catch((err: unknown) => {
        // A bug must cost one connection, never the process.
        this.#logger.error({ port, err: describeError(err) }, 'connection setup failed');
        sock.destroy();
      });
  }

  #route(sock: Socket, hello: ClientHello): void {
    const port = this.#plan.port;
    const deps = this.#deps;
    if (sock.destroyed) return;
    const sel = this.#selector.select(hello.serverName);
    if (!sel) {
      this.#refuse(sock, port, 'no_server', `no server on port ${port} for SNI ${hello.serverName ?? '(none)'}`, ALERT.UNRECOGNIZED_NAME, { sni: hello.serverName });
      return;
    }
    const plan = sel.server;
    deps.metrics.connections.inc({ port: String(port), mode: plan.mode });
    if (plan.mode === 'PASSTHROUGH') {
      this.#splice(sock, plan, hello.serverName, 'passthrough');
      return;
    }
    const t = this.#terminators.get(plan.id);
    if (!t || !t.tlsServer || !t.serving) {
      this.#refuse(sock, port, 'no_certificate', t?.problem ?? `server ${plan.id} has no TLS context`, ALERT.HANDSHAKE_FAILURE, { sni: hello.serverName, server: plan.id });
      return;
    }
    const st = deps.stapling.decide(t.serving);
    if (st.action === 'fail-handshake') {
      this.#refuse(sock, port, 'staple_policy', st.reason, ALERT.HANDSHAKE_FAILURE, { sni: hello.serverName, server: plan.id, credential: t.serving.name });
      return;
    }
    // The hello is back in the socket's buffer and the socket is paused: TLS starts from its first byte.
    t.tlsServer.emit('connection', sock);
  }

  #secured(sock: TLSSocket, plan: ServerPlan, validation: ValidationCredential | null, localUriSans: string[] | undefined): void {
    const deps = this.#deps;
    const port = plan.port;
    const serverName = (sock as TLSSocket & { servername?: string | false }).servername || undefined;
    let peer: ConnectionContext['peer'];
    if ((plan.mode === 'MUTUAL' || plan.mode === 'ISTIO_MUTUAL') && validation) {
      const verdict = verifyPeer(
        sock,
        { mode: plan.mode, validation, onlyVerifyLeafCertCrl: plan.onlyVerifyLeafCertCrl, subjectAltNames: plan.subjectAltNames, trustDomain: plan.trustDomain },
        deps.stapling.clock.now(),
      );
      if (!verdict.ok) {
        deps.metrics.handshakeFailed(port, verdict.reason);
        this.#access({ port, server: plan.id, sni: serverName, result: 'peer_refused', reason: verdict.reason, detail: verdict.message, remote: sock.remoteAddress });
        sock.destroy();
        return;
      }
      peer = verdict.peer;
    }
    deps.metrics.handshakes.inc({ port: String(port), result: 'success' });
    const ctx: ConnectionContext = {
      listenerPort: port,
      serverHosts: plan.hosts,
      serverName,
      alpn: sock.alpnProtocol ?? false,
      tlsVersion: sock.getProtocol() ?? undefined,
      remoteAddress: sock.remoteAddress ?? '',
      remotePort: sock.remotePort ?? 0,
      peer,
      admission: undefined,
      ...(localUriSans ? { localUriSans } : {}),
    };
    if (peer && deps.admit) {
      try {
        ctx.admission = deps.admit(plan, ctx);
      } catch (err) {
        ctx.admission = Promise.resolve({ allowed: false, reason: `validation failed: ${describeError(err)}` });
      }
    }
    this.#access({ port, server: plan.id, sni: serverName, result: 'accepted', tls: ctx.tlsVersion, alpn: ctx.alpn || undefined, peer: peer?.spiffeId ?? peer?.chain[0]?.subject, remote: ctx.remoteAddress });
    if (plan.protocol === 'TLS') {
      if (!ctx.admission) {
        this.#splice(sock, plan, serverName, 'terminated');
        return;
      }
      // A raw TCP route has no way to say 403: its bytes wait for the validators, and a denial closes it.
      ctx.admission.then(
        (a) => {
          if (sock.destroyed) return;
          if (a.allowed) this.#splice(sock, plan, serverName, 'terminated');
          else {
            this.#access({ port, server: plan.id, sni: serverName, result: 'peer_refused', reason: 'admission_denied', detail: a.reason, remote: ctx.remoteAddress });
            sock.destroy();
          }
        },
        () => sock.destroy(),
      );
      return;
    }
    try {
      deps.handler.handle(sock, ctx);
    } catch (err) {
      this.#logger.error({ server: plan.id, err: describeError(err) }, 'connection handler failed');
      sock.destroy();
    }
  }

  #splice(sock: Socket, plan: ServerPlan, serverName: string | undefined, kind: 'passthrough' | 'terminated' | 'tcp'): void {
    const deps = this.#deps;
    const port = plan.port;
    const route = deps.routeTcp(plan, serverName);
    if ('error' in route) {
      deps.metrics.passthrough.inc({ port: String(port), result: 'no_route' });
      this.#refuse(sock, port, 'no_route', route.error, kind === 'passthrough' ? ALERT.UNRECOGNIZED_NAME : null, { sni: serverName, server: plan.id });
      return;
    }
    splice(sock, route.target, { connectTimeoutMs: deps.connectTimeoutMs, idleTimeoutMs: deps.idleTimeoutMs }).then(
      () => {
        deps.metrics.passthrough.inc({ port: String(port), result: 'connected' });
        this.#access({ port, server: plan.id, sni: serverName, result: kind, upstream: route.destination, remote: sock.remoteAddress });
      },
      (err: unknown) => {
        deps.metrics.passthrough.inc({ port: String(port), result: 'upstream_error' });
        this.#access({ port, server: plan.id, sni: serverName, result: 'upstream_error', upstream: route.destination, detail: describeError(err) });
      },
    );
  }
}
