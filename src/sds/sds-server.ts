import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  Server,
  ServerCredentials,
  status as Status,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { ErrorCodes, MeshError, describeError, silentLogger, type Logger } from '../core/index.js';
import { Certificate } from '../pki/index.js';
import type { SecretProvider } from './secret-provider.js';
import type { SecretResource } from './secret-resource.js';
import { SECRET_TYPE_URL, sdsProtos, type DiscoveryRequestMessage, type DiscoveryResponseMessage } from './sds-protos.js';
import type { SdsMetrics } from './sds-metrics.js';

/**
 * Client identity → the resource names it may fetch. Identities are SPIFFE IDs, DNS names or `CN=…` of the
 * client certificate; both sides may end in `*` (a prefix match), e.g.
 * `spiffe://cluster.local/ns/istio-system/sa/ingress-*: [kubernetes://ingress-*]`.
 */
export type SdsAuthorization = Readonly<Record<string, readonly string[]>>;

export interface SdsServiceOptions {
  provider: SecretProvider;
  logger?: Logger;
  metrics?: SdsMetrics;
  /**
   * When set, calls that came over TLS must present a client certificate (mTLS) whose identity is allowed every
   * name it asks for. Calls over the Unix socket are local and trusted by the socket's file permissions.
   */
  authorization?: SdsAuthorization;
  /** Sent as control_plane.identifier, for Envoy's config dump. */
  controlPlaneId?: string;
}

export interface SdsService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
  /** StreamSecrets streams open. */
  streamCount(): number;
  /**
   * Ends every stream (UNAVAILABLE, so that clients reconnect elsewhere or later) and stops listening to the
   * provider; `silently` only forgets the streams (their transport is already gone).
   */
  close(silently?: boolean): void;
}

interface Undecodable {
  undecodable: string;
}
type DecodedRequest = DiscoveryRequestMessage | Undecodable;

interface InFlight {
  name: string;
  digest: string;
  version: string;
}

interface StreamState {
  id: number;
  /** Initial rounds so far (first request, later subscriptions): their nonces are `i<k>.<n>`. */
  initialRounds: number;
  call: ServerDuplexStream<DecodedRequest, Buffer>;
  peer: string;
  node: string | null;
  identity: string | null;
  allowed: ((name: string) => boolean) | null;
  names: Set<string>;
  /** What the client accepted, per name. */
  acked: Map<string, string>;
  /** What the client will hold once it accepts everything sent: acked plus in flight. */
  expected: Map<string, string>;
  inflight: Map<string, InFlight>;
  /** Digests the client rejected, per name: never sent to it again. */
  rejected: Map<string, Set<string>>;
  lastNonce: string | null;
  started: boolean;
  closed: boolean;
}

/** One round of sending (a change, or one stream's request): nonces and encodings are shared within it. */
interface Round {
  /** The nonce prefix: the push number, or `i<k>` for a stream's k-th initial round. */
  prefix: string;
  kind: 'initial' | 'push';
  nameIndex: Map<string, number>;
  encoded: Map<string, Buffer>;
}

/** Encodings of initial responses, shared by every stream that starts the same way (a fleet of Envoys). */
const INITIAL_CACHE_SIZE = 256;

/** A short, deterministic version for a set of name → digest: the same state gives the same version, across restarts. */
export function versionOf(state: ReadonlyMap<string, string>): string {
  const h = createHash('sha256');
  for (const name of [...state.keys()].sort()) h.update(name).update('\0').update(state.get(name)!).update('\n');
  return h.digest('hex').slice(0, 16);
}

/** What a call (stream or unary) tells of its transport. */
interface ServerSurfaceCall {
  getPeer(): string;
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: { raw?: Buffer } } | undefined;
}

function patternMatches(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  return pattern.endsWith('*') ? value.startsWith(pattern.slice(0, -1)) : pattern === value;
}

function identitiesOf(cert: Certificate): string[] {
  const ids = [...cert.spiffeIds, ...cert.sans.dns];
  if (cert.commonName) ids.push(`CN=${cert.commonName}`);
  return ids;
}

function safePeer(call: ServerSurfaceCall): string {
  try {
    return call.getPeer();
  } catch {
    return 'unknown';
  }
}

/**
 * Who may ask for what: null when no authorization applies (no mapping, or a local call over the Unix socket);
 * otherwise a predicate over resource names, or a MeshError for a TLS call without a usable client certificate.
 */
function authorizer(call: ServerSurfaceCall, authorization: SdsAuthorization | undefined): { identity: string | null; allowed: ((n: string) => boolean) | null } {
  if (!authorization) return { identity: null, allowed: null };
  const auth = call.getAuthContext();
  if (auth?.transportSecurityType !== 'ssl') return { identity: null, allowed: null };
  const raw = auth.sslPeerCertificate?.raw;
  if (!raw) throw new MeshError(ErrorCodes.UNAUTHENTICATED, 'this SDS server requires a client certificate (mTLS) to fetch secrets');
  let cert: Certificate;
  try {
    cert = Certificate.fromDer(raw, 'client certificate');
  } catch (err) {
    throw new MeshError(ErrorCodes.UNAUTHENTICATED, `the client certificate cannot be read: ${describeError(err)}`);
  }
  const ids = identitiesOf(cert);
  const grants = Object.entries(authorization).filter(([pattern]) => ids.some((id) => patternMatches(pattern, id)));
  const identity = ids[0] ?? cert.subject;
  return { identity, allowed: (name: string) => grants.some(([, names]) => names.some((p) => patternMatches(p, name))) };
}

function grpcError(code: Status, details: string): { code: Status; details: string } {
  return { code, details };
}

/**
 * Envoy's SecretDiscoveryService (SotW StreamSecrets, and FetchSecrets) over a SecretProvider, with versions,
 * nonces, ACK and NACK as Envoy's xDS protocol describes them:
 *  - each response carries one resource (as SDS allows: Secrets are not state-of-the-world types), so that an ACK or
 *    NACK names exactly one version of one secret; version_info is a digest of everything the client will hold, so
 *    it is the same for the same content across restarts, and a reconnecting client that already has it gets no
 *    needless resend;
 *  - an ACK records what the client holds; a NACK is logged with the client's error_detail and that version is
 *    never sent to that client again (a later change is);
 *  - a request with a stale nonce is not answered (its ACK/NACK still counts); newly subscribed names get their
 *    resources, unsubscribed ones are forgotten;
 *  - a resource that is withheld (stapling policy) or absent is simply not sent: SotW has no "does not exist" for
 *    Secrets, and Envoy keeps the last version it accepted;
 *  - on every change from the provider, every stream subscribed to a changed name gets what is new for it; streams
 *    in one push share nonces and encoded bytes, so ten thousand streams cost one encoding (and so do identical
 *    first answers to streams that subscribe alike).
 */
export function createSdsService(options: SdsServiceOptions): SdsService {
  const { provider } = options;
  const logger = options.logger ?? silentLogger;
  const metrics = options.metrics;
  const protos = sdsProtos();
  const streams = new Set<StreamState>();
  let nextId = 0;
  let seq = 0;

  const streamDef = protos.stream;
  const fetchDef = protos.fetch;
  const decode = (buf: Buffer): DecodedRequest => {
    try {
      return streamDef.requestDeserialize(buf);
    } catch (err) {
      return { undecodable: describeError(err) };
    }
  };
  const encode = (value: Buffer | DiscoveryResponseMessage): Buffer => (Buffer.isBuffer(value) ? value : streamDef.responseSerialize(value));
  const definition = {
    StreamSecrets: { ...streamDef, requestDeserialize: decode, responseSerialize: encode },
    FetchSecrets: { ...fetchDef, requestDeserialize: decode },
  } as unknown as ServiceDefinition;

  const controlPlane = options.controlPlaneId ? { controlPlane: { identifier: options.controlPlaneId } } : {};

  const initialEncoded = new Map<string, Buffer>();
  const newPushRound = (): Round => ({ prefix: String(++seq), kind: 'push', nameIndex: new Map(), encoded: new Map() });
  // Nonces of a stream's k-th initial round are the same on every stream (unique within each), so that the bytes of
  // identical first answers are encoded once for all of them.
  const newInitialRound = (s: StreamState): Round => ({ prefix: `i${++s.initialRounds}`, kind: 'initial', nameIndex: new Map(), encoded: initialEncoded });

  const send = (s: StreamState, resource: SecretResource, round: Round): void => {
    s.expected.set(resource.name, resource.digest);
    const version = versionOf(s.expected);
    let idx = round.nameIndex.get(resource.name);
    if (idx === undefined) round.nameIndex.set(resource.name, (idx = round.nameIndex.size));
    // Unique within a stream (one response per name per round); shared across streams so that bytes are shared.
    const nonce = `${round.prefix}.${idx}`;
    const key = `${version}|${nonce}|${resource.digest}`;
    let bytes = round.encoded.get(key);
    if (!bytes) {
      bytes = streamDef.responseSerialize({ versionInfo: version, resources: [resource.message], typeUrl: SECRET_TYPE_URL, nonce, ...controlPlane });
      if (round.encoded.size >= INITIAL_CACHE_SIZE) round.encoded.delete(round.encoded.keys().next().value!);
      round.encoded.set(key, bytes);
    }
    s.inflight.set(nonce, { name: resource.name, digest: resource.digest, version });
    s.lastNonce = nonce;
    metrics?.responses.inc({ kind: round.kind });
    s.call.write(bytes);
  };

  /** Sends whatever is new for the client among `names` (all subscribed names by default). */
  const pushPending = (s: StreamState, round: Round, names?: Iterable<string>): void => {
    for (const name of names ?? s.names) {
      if (s.closed) return;
      if (!s.names.has(name)) continue;
      const r = provider.resolve(name);
      if (r.state !== 'ready') {
        logger.debug({ stream: s.id, resource: name, state: r.state, reason: r.reason }, 'SDS resource not sent');
        continue;
      }
      const d = r.resource.digest;
      if (s.expected.get(name) === d) continue;
      if (s.rejected.get(name)?.has(d)) continue;
      send(s, r.resource, round);
    }
  };

  const fail = (s: StreamState, code: Status, details: string, reason: string): void => {
    if (s.closed) return;
    metrics?.denied.inc({ reason });
    logger.info({ stream: s.id, peer: s.peer, node: s.node, identity: s.identity, reason: details }, 'SDS stream refused');
    s.closed = true;
    streams.delete(s);
    s.call.emit('error', grpcError(code, details));
  };

  const onRequest = (s: StreamState, req: DecodedRequest): void => {
    if (s.closed) return;
    if ('undecodable' in req) {
      fail(s, Status.INVALID_ARGUMENT, `the request is not an envoy.service.discovery.v3.DiscoveryRequest: ${req.undecodable}`, 'invalid_argument');
      return;
    }
    if (req.typeUrl && req.typeUrl !== SECRET_TYPE_URL) {
      fail(s, Status.INVALID_ARGUMENT, `type_url ${req.typeUrl}: this server serves only ${SECRET_TYPE_URL}`, 'invalid_argument');
      return;
    }
    if (!s.started && req.node?.id) s.node = req.node.id;
    const nonce = req.responseNonce ?? '';
    if (nonce) {
      const info = s.inflight.get(nonce);
      if (info) {
        s.inflight.delete(nonce);
        const err = req.errorDetail;
        if (err && (err.code || err.message)) {
          let set = s.rejected.get(info.name);
          if (!set) s.rejected.set(info.name, (set = new Set()));
          set.add(info.digest);
          const held = s.acked.get(info.name);
          if (s.expected.get(info.name) === info.digest) {
            if (held === undefined) s.expected.delete(info.name);
            else s.expected.set(info.name, held);
          }
          metrics?.nacks.inc({ resource: info.name });
          logger.warn(
            { stream: s.id, peer: s.peer, node: s.node, resource: info.name, version: info.version, nonce, code: err.code, error: err.message },
            'SDS client rejected a secret (NACK); that version will not be sent to it again',
          );
        } else {
          s.acked.set(info.name, info.digest);
          metrics?.acks.inc();
          logger.debug({ stream: s.id, node: s.node, resource: info.name, version: info.version }, 'SDS ACK');
        }
      }
      // A request answering an older response is stale: its ACK/NACK counts, its subscription does not. (Before
      // anything was sent on this stream, a nonce can only be left over from an earlier stream: not stale.)
      if (s.lastNonce !== null && nonce !== s.lastNonce) return;
    }
    const wanted = new Set(req.resourceNames ?? []);
    if (s.allowed) {
      const denied = [...wanted].filter((n) => !s.allowed!(n));
      if (denied.length) {
        fail(s, Status.PERMISSION_DENIED, `${s.identity ?? 'this client'} may not fetch ${denied.join(', ')}`, 'permission_denied');
        return;
      }
    }
    const added = [...wanted].filter((n) => !s.names.has(n));
    for (const n of s.names) {
      if (wanted.has(n)) continue;
      // Unsubscribed: forget it, so that a later re-subscription is answered afresh, as the protocol requires.
      s.acked.delete(n);
      s.expected.delete(n);
      s.rejected.delete(n);
    }
    s.names = wanted;
    const round = newInitialRound(s);
    if (!s.started) {
      s.started = true;
      logger.debug({ stream: s.id, peer: s.peer, node: s.node, names: [...wanted], version: req.versionInfo }, 'SDS stream opened');
      const version = req.versionInfo ?? '';
      if (version) {
        // The client says what it holds from an earlier stream; when that is exactly what we would send, say nothing.
        const current = new Map<string, string>();
        for (const n of wanted) {
          const r = provider.resolve(n);
          if (r.state === 'ready') current.set(n, r.resource.digest);
        }
        if (current.size && versionOf(current) === version) {
          for (const [n, d] of current) {
            s.acked.set(n, d);
            s.expected.set(n, d);
          }
          return;
        }
      }
    }
    pushPending(s, round, added);
  };

  const streamSecrets = (call: ServerDuplexStream<DecodedRequest, Buffer>): void => {
    const s: StreamState = {
      id: ++nextId,
      initialRounds: 0,
      call,
      peer: safePeer(call),
      node: null,
      identity: null,
      allowed: null,
      names: new Set(),
      acked: new Map(),
      expected: new Map(),
      inflight: new Map(),
      rejected: new Map(),
      lastNonce: null,
      started: false,
      closed: false,
    };
    streams.add(s);
    const done = () => {
      if (s.closed) return;
      s.closed = true;
      streams.delete(s);
      logger.debug({ stream: s.id, node: s.node }, 'SDS stream closed');
    };
    call.on('data', (req: DecodedRequest) => {
      try {
        onRequest(s, req);
      } catch (err) {
        logger.error({ stream: s.id, err: describeError(err) }, 'SDS request failed');
        fail(s, Status.INTERNAL, 'internal error in the SDS server; its log has the details', 'internal');
      }
    });
    call.on('end', () => {
      // The client closed its side: it wants nothing more.
      if (!s.closed) {
        done();
        call.end();
      }
    });
    call.on('cancelled', done);
    call.on('error', done);
    call.on('close', done);
    try {
      const a = authorizer(call, options.authorization);
      s.identity = a.identity;
      s.allowed = a.allowed;
    } catch (err) {
      fail(s, Status.UNAUTHENTICATED, describeError(err), 'unauthenticated');
    }
  };

  const fetchSecrets = (call: ServerUnaryCall<DecodedRequest, DiscoveryResponseMessage>, callback: sendUnaryData<DiscoveryResponseMessage>): void => {
    const req = call.request;
    if ('undecodable' in req) {
      metrics?.denied.inc({ reason: 'invalid_argument' });
      callback(grpcError(Status.INVALID_ARGUMENT, `the request is not an envoy.service.discovery.v3.DiscoveryRequest: ${req.undecodable}`));
      return;
    }
    let allowed: ((n: string) => boolean) | null;
    let identity: string | null;
    try {
      ({ allowed, identity } = authorizer(call, options.authorization));
    } catch (err) {
      metrics?.denied.inc({ reason: 'unauthenticated' });
      callback(grpcError(Status.UNAUTHENTICATED, describeError(err)));
      return;
    }
    const names = req.resourceNames ?? [];
    const denied = allowed ? names.filter((n) => !allowed!(n)) : [];
    if (denied.length) {
      metrics?.denied.inc({ reason: 'permission_denied' });
      callback(grpcError(Status.PERMISSION_DENIED, `${identity ?? 'this client'} may not fetch ${denied.join(', ')}`));
      return;
    }
    const state = new Map<string, string>();
    const resources = [];
    for (const n of new Set(names)) {
      const r = provider.resolve(n);
      if (r.state !== 'ready') continue;
      state.set(n, r.resource.digest);
      resources.push(r.resource.message);
    }
    metrics?.responses.inc({ kind: 'fetch' });
    callback(null, { versionInfo: versionOf(state), resources, typeUrl: SECRET_TYPE_URL, nonce: randomBytes(8).toString('hex'), ...controlPlane });
  };

  const unsubscribe = provider.subscribe((changed) => {
    const round = newPushRound();
    for (const s of [...streams]) {
      if (!s.started || s.closed) continue;
      if (changed === null) pushPending(s, round);
      else {
        const mine = changed.filter((n) => s.names.has(n));
        if (mine.length) pushPending(s, round, mine);
      }
    }
  });

  metrics?.observe(
    () => streams.size,
    () => {
      const names = new Set<string>();
      for (const s of streams) for (const n of s.names) names.add(n);
      return [...names].filter((n) => provider.resolve(n).state === 'withheld').sort();
    },
  );

  return {
    definition,
    implementation: { StreamSecrets: streamSecrets, FetchSecrets: fetchSecrets } as unknown as UntypedServiceImplementation,
    streamCount: () => streams.size,
    close(silently = false) {
      unsubscribe();
      for (const s of [...streams]) {
        s.closed = true;
        streams.delete(s);
        if (!silently) s.call.emit('error', grpcError(Status.UNAVAILABLE, 'the SDS server is shutting down'));
      }
    },
  };
}

/** TLS for the SDS listener: the server's chain and key, and with a client CA, client certificates required. */
export function sdsServerCredentials(options: { certChainPem: string; keyPem: string; clientCaPem?: string }): ServerCredentials {
  const root = options.clientCaPem ? Buffer.from(options.clientCaPem) : null;
  return ServerCredentials.createSsl(root, [{ cert_chain: Buffer.from(options.certChainPem), private_key: Buffer.from(options.keyPem) }], root !== null);
}

export interface SdsServerOptions extends SdsServiceOptions {
  /** gRPC with TLS on HOST:PORT (port 0: any free port). */
  listen?: { host: string; port: number; credentials: ServerCredentials };
  /** Plain gRPC on a Unix socket (`/path` or `unix:/path`), local and trusted by its file mode. */
  uds?: string;
  /** File mode of the socket. Default 0600: only the server's user (Envoy runs as the same user in Istio's pods). */
  udsMode?: number;
  /** gRPC server options (message sizes, keepalive). */
  grpcOptions?: Record<string, unknown>;
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function socketPath(uds: string): string {
  return uds.startsWith('unix:') ? uds.slice('unix:'.length).replace(/^\/\/(?=\/)/, '') : uds;
}

/**
 * A standalone SDS server: its own grpc-js Server on a TLS listener and/or a Unix socket. A stale socket left by
 * a crash is replaced; any other file at that path is refused rather than deleted.
 */
export class SdsServer {
  readonly service: SdsService;
  readonly addresses: { listen?: { host: string; port: number }; uds?: string };
  readonly #server: Server;
  readonly #logger: Logger;

  private constructor(server: Server, service: SdsService, addresses: SdsServer['addresses'], logger: Logger) {
    this.#server = server;
    this.service = service;
    this.addresses = addresses;
    this.#logger = logger;
  }

  static async start(options: SdsServerOptions): Promise<SdsServer> {
    if (!options.listen && !options.uds) {
      throw new MeshError(ErrorCodes.CONFIG, 'sds: give listen (TLS) and/or uds (a Unix socket) to serve on', { subject: 'sds' });
    }
    const logger = options.logger ?? silentLogger;
    const server = new Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024, ...(options.grpcOptions ?? {}) });
    const service = createSdsService(options);
    server.addService(service.definition, service.implementation);
    const bind = (address: string, creds: ServerCredentials) =>
      new Promise<number>((resolve, reject) => server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))));
    const addresses: SdsServer['addresses'] = {};
    try {
      if (options.listen) {
        const { host, port } = options.listen;
        try {
          addresses.listen = { host, port: await bind(hostPort(host, port), options.listen.credentials) };
        } catch (err) {
          throw new MeshError(ErrorCodes.UNAVAILABLE, `sds.listen ${hostPort(host, port)}: cannot listen: ${describeError(err)}`, { subject: 'sds.listen', cause: err });
        }
      }
      if (options.uds) {
        const path = socketPath(options.uds);
        prepareSocketPath(path);
        try {
          await bind(`unix:${path}`, ServerCredentials.createInsecure());
        } catch (err) {
          throw new MeshError(ErrorCodes.UNAVAILABLE, `sds.uds ${path}: cannot listen: ${describeError(err)}`, { subject: 'sds.uds', cause: err });
        }
        chmodSync(path, options.udsMode ?? 0o600);
        addresses.uds = path;
      }
    } catch (err) {
      service.close();
      server.forceShutdown();
      throw err;
    }
    logger.info({ ...addresses }, 'SDS server listening');
    return new SdsServer(server, service, addresses, logger);
  }

  get streams(): number {
    return this.service.streamCount();
  }

  /** Ends the streams (clients reconnect), stops listening, removes the socket. */
  async close(graceMs = 2000): Promise<void> {
    this.service.close();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (this.addresses.uds) removeSocket(this.addresses.uds);
    this.#logger.info({ ...this.addresses }, 'SDS server stopped');
  }

  /** Stops at once, as a crash would: streams are cut without a status. For tests of client reconnection. */
  kill(): void {
    this.#server.forceShutdown();
    this.service.close(true);
    if (this.addresses.uds) removeSocket(this.addresses.uds);
  }
}

function prepareSocketPath(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) {
    throw new MeshError(ErrorCodes.CONFIG, `sds.uds ${path}: a file that is not a socket is in the way; remove it or choose another path`, { subject: 'sds.uds' });
  }
  unlinkSync(path);
}

function removeSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // Already gone.
  }
}
