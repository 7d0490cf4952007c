import { Agent } from 'node:http';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ErrorCodes, MeshError } from '../core/index.js';
import type { UpstreamTls } from './upstream-connector.js';

const MAX_SPARE = 8;

/** What a verified upstream handshake established: the certificate mimicked and the protocol chosen. */
export interface UpstreamVerdict {
  fingerprint: string;
  alpn: string | false;
  at: number;
}

/**
 * The upstream connections of one host (SNI, port and the ALPN protocols offered), shared by every client
 * connection bumped for it: HTTP/1.1 through one keep-alive agent, HTTP/2 through one session. A new client
 * connection whose host was verified within `verdictTtlMs` skips the upstream handshake (its mimic comes from the
 * cache by the verdict's fingerprint); every upstream connection the pool opens is verified as the first was, and a
 * connection whose certificate no longer verifies fails the request and clears the verdict.
 */
export class UpstreamHost {
  verdict: UpstreamVerdict | null = null;
  readonly agent: Agent;
  /** Verified connections made during a client's handshake and not yet used by a request. */
  readonly #spare: TLSSocket[] = [];
  #session: ClientHttp2Session | null = null;
  #sessionPending: Promise<ClientHttp2Session> | null = null;
  #closed = false;

  readonly #acceptInvalid: boolean;

  constructor(
    readonly authority: string,
    /** Opens and verifies a new upstream connection offering `alpn`. */
    private readonly connect: (alpn: string[]) => Promise<UpstreamTls>,
    /** For one client connection that went on past a mimicked certificate error: its connections are not verified. */
    options: { acceptInvalid?: boolean } = {},
  ) {
    this.#acceptInvalid = options.acceptInvalid ?? false;
    const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, timeout: 60_000 });
    (agent as unknown as { createConnection: unknown }).createConnection = (_opts: unknown, cb: (err: Error | null, s?: Socket) => void): Socket | undefined => {
      let spare: TLSSocket | undefined;
      while ((spare = this.#spare.pop())) if (!spare.destroyed && spare.writable) return spare;
      this.#open(['http/1.1']).then(
        (s) => cb(null, s),
        (err: Error) => cb(err),
      );
      return undefined;
    };
    this.agent = agent;
  }

  async #open(alpn: string[]): Promise<TLSSocket> {
    if (this.#closed) throw new MeshError(ErrorCodes.BUMP_UPSTREAM, `upstream ${this.authority}: the proxy is stopping`);
    const up = await this.connect(alpn);
    if (up.problem && !this.#acceptInvalid) {
      up.socket.destroy();
      this.verdict = null;
      throw new MeshError(ErrorCodes.BUMP_UPSTREAM_CERTIFICATE, `upstream ${this.authority}: ${up.problem.message}`, { subject: this.authority });
    }
    // A valid certificate other than the one mimicked (several servers behind one name): still verified, so used.
    if (this.verdict) this.verdict = { fingerprint: up.cert.fingerprint256, alpn: this.verdict.alpn, at: Date.now() };
    return up.socket;
  }

  /** A verified connection of its own, for one tunnel (an HTTP/1.1 Upgrade such as WebSocket): never pooled. */
  dedicated(): Promise<TLSSocket> {
    let spare: TLSSocket | undefined;
    while ((spare = this.#spare.pop())) {
      if (!spare.destroyed && spare.writable) {
        spare.setTimeout(0);
        return Promise.resolve(spare);
      }
    }
    return this.#open(['http/1.1']);
  }

  /** The verdict, if recent enough to skip the upstream handshake of a new client connection. */
  freshVerdict(now: number, ttlMs: number): UpstreamVerdict | null {
    return this.verdict && now - this.verdict.at <= ttlMs && !this.#closed ? this.verdict : null;
  }

  /** Adopts the connection a client's handshake made (server-first), verified and not yet used. */
  adopt(up: UpstreamTls): void {
    if (!this.#acceptInvalid) this.verdict = { fingerprint: up.cert.fingerprint256, alpn: up.alpn, at: Date.now() };
    if (up.alpn === 'h2') {
      if (this.#session && !this.#session.closed && !this.#session.destroyed) up.socket.destroy();
      else this.#session = this.#sessionOver(up.socket);
      return;
    }
    this.#spare.push(up.socket);
    // Client connections whose requests found an idle pooled connection leave their spare unused: keep a few.
    while (this.#spare.length > MAX_SPARE) this.#spare.shift()!.destroy();
    up.socket.once('close', () => {
      const i = this.#spare.indexOf(up.socket);
      if (i >= 0) this.#spare.splice(i, 1);
    });
    // An unused spare is dropped after a while, like the agent's idle sockets.
    up.socket.setTimeout(60_000, () => up.socket.destroy());
  }

  #sessionOver(socket: TLSSocket): ClientHttp2Session {
    const session = http2Connect(`https://${this.authority}`, { createConnection: () => socket });
    session.on('error', () => undefined);
    session.setTimeout(60_000, () => session.close());
    session.once('close', () => {
      if (this.#session === session) this.#session = null;
    });
    return session;
  }

  /** The shared HTTP/2 session, reconnected (and verified) when it has closed. */
  session(): Promise<ClientHttp2Session> {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return Promise.resolve(this.#session);
    this.#sessionPending ??= this.#open(['h2'])
      .then((socket) => {
        if (socket.alpnProtocol !== 'h2') {
          socket.destroy();
          throw new MeshError(ErrorCodes.BUMP_UPSTREAM, `upstream ${this.authority} no longer offers HTTP/2`, { subject: this.authority });
        }
        this.#session = this.#sessionOver(socket);
        return this.#session;
      })
      .finally(() => {
        this.#sessionPending = null;
      });
    return this.#sessionPending;
  }

  close(): void {
    this.#closed = true;
    this.agent.destroy();
    for (const s of this.#spare.splice(0)) s.destroy();
    this.#session?.destroy();
  }
}
