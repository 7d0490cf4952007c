import { EventEmitter } from 'node:events';
import { Client, credentials as grpcCredentials, status as Status, type ChannelCredentials, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { ErrorCodes, MeshError, silentLogger, type Logger } from '../core/index.js';
import { decodeSecretResource, type ReceivedSecret } from './secret-resource.js';
import {
  FETCH_SECRETS_PATH,
  SECRET_TYPE_URL,
  STREAM_SECRETS_PATH,
  sdsProtos,
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
} from './sds-protos.js';

export interface SdsClientOptions {
  /** `unix:/path/sds.sock` or `HOST:PORT`. */
  target: string;
  /** Default: insecure (for the Unix socket). For TLS, see `sdsClientCredentials`. */
  credentials?: ChannelCredentials;
  /** The resource names to subscribe to (`kubernetes://gw`, `kubernetes://gw-cacert`, `default`, `ROOTCA`…). */
  names: readonly string[];
  /** Sent in the first request of each stream, as Envoy does. */
  node?: { id: string; cluster?: string };
  logger?: Logger;
  /** Reconnection: exponential from initialMs, capped at maxMs, ± jitter. Defaults 250 ms, 30 s, 0.2. */
  backoff?: { initialMs?: number; maxMs?: number; jitter?: number };
  /** TLS server name to verify when `target` is an address (grpc.ssl_target_name_override). */
  serverName?: string;
  channelOptions?: Record<string, unknown>;
}

/** A secret the client accepted, with the response's version. */
export interface ClientSecret extends ReceivedSecret {
  version: string;
  receivedAt: Date;
}

export interface NackEvent {
  nonce: string;
  /** The version rejected (the response's); the client stays at its previous one. */
  rejectedVersion: string;
  errors: string[];
}

export interface DisconnectEvent {
  code: Status;
  details: string;
  retryInMs: number;
}

/** TLS (and with a certificate and key, mTLS) credentials for an SDS server on an address. */
export function sdsClientCredentials(options: { rootCertsPem: string; certChainPem?: string; keyPem?: string }): ChannelCredentials {
  return grpcCredentials.createSsl(
    Buffer.from(options.rootCertsPem),
    options.keyPem ? Buffer.from(options.keyPem) : null,
    options.certChainPem ? Buffer.from(options.certChainPem) : null,
  );
}

/**
 * An SDS client as Envoy behaves: subscribes to names on a StreamSecrets stream; checks each Secret as Envoy does
 * when it applies one (secret-resource.ts) and ACKs good responses with their version or NACKs bad ones with the
 * previous version and the reasons in error_detail; keeps the last good secret of each name; sends the version
 * it holds when it opens a new stream; and reconnects with capped, jittered exponential backoff when the server
 * goes away. Valid resources of a partly bad response are kept (as gRPC's xDS clients do) while it is NACKed.
 *
 * Events: 'secret' (ClientSecret), 'ack' ({nonce, version}), 'nack' (NackEvent), 'connected',
 * 'disconnected' (DisconnectEvent). The gateway and the agent build on it.
 */
export class SdsClient extends EventEmitter {
  readonly #options: SdsClientOptions;
  readonly #logger: Logger;
  readonly #client: Client;
  readonly #secrets = new Map<string, ClientSecret>();
  #names: Set<string>;
  #version = '';
  #lastNonce = '';
  #call: ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage> | null = null;
  #attempts = 0;
  #retry: NodeJS.Timeout | null = null;
  #closed = false;
  #started = false;
  #connected = false;

  constructor(options: SdsClientOptions) {
    super();
    if (!options.target) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'SdsClient: target is required (unix:/path or HOST:PORT)', { subject: 'target' });
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#names = new Set(options.names);
    const initial = options.backoff?.initialMs ?? 250;
    const max = options.backoff?.maxMs ?? 30_000;
    // grpc-js reconnects the channel on its own schedule too (default up to 120 s): keep it within ours.
    this.#client = new Client(options.target, options.credentials ?? grpcCredentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': initial,
      'grpc.max_reconnect_backoff_ms': max,
      ...(options.serverName ? { 'grpc.ssl_target_name_override': options.serverName, 'grpc.default_authority': options.serverName } : {}),
      ...(options.channelOptions ?? {}),
    });
    // An 'error' event with no listener would throw: errors are reported as 'disconnected' and in the log.
    this.on('error', () => undefined);
  }

  /** Opens the stream (once). */
  start(): this {
    if (this.#started || this.#closed) return this;
    this.#started = true;
    this.#connect();
    return this;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** The version the client holds (of the last response it accepted), '' before any. */
  get version(): string {
    return this.#version;
  }

  get names(): string[] {
    return [...this.#names];
  }

  /** The last good secret of a name. */
  get(name: string): ClientSecret | undefined {
    return this.#secrets.get(name);
  }

  /** Changes the subscription: the server sends the newly named resources; dropped names are forgotten here. */
  setNames(names: readonly string[]): void {
    this.#names = new Set(names);
    for (const n of [...this.#secrets.keys()]) if (!this.#names.has(n)) this.#secrets.delete(n);
    if (this.#call) this.#write({ versionInfo: this.#version, resourceNames: [...this.#names], typeUrl: SECRET_TYPE_URL, responseNonce: this.#lastNonce });
  }

  /** Resolves with the secret once one satisfying `accept` is held (at once if it already is). */
  waitFor(name: string, accept: (s: ClientSecret) => boolean = () => true, timeoutMs = 5000): Promise<ClientSecret> {
    const have = this.#secrets.get(name);
    if (have && accept(have)) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const onSecret = (s: ClientSecret) => {
        if (s.name !== name || !accept(s)) return;
        clearTimeout(timer);
        this.off('secret', onSecret);
        resolve(s);
      };
      const timer = setTimeout(() => {
        this.off('secret', onSecret);
        reject(new MeshError(ErrorCodes.UNAVAILABLE, `no ${have ? 'new ' : ''}secret ${name} from ${this.#options.target} within ${timeoutMs} ms`, { subject: name }));
      }, timeoutMs);
      this.on('secret', onSecret);
    });
  }

  /** One FetchSecrets call: what the server holds now for `names`, decoded and checked; nothing is stored. */
  fetch(names: readonly string[], timeoutMs = 5000): Promise<{ version: string; secrets: ReceivedSecret[]; errors: string[] }> {
    const m = sdsProtos().fetch;
    return new Promise((resolve, reject) => {
      this.#client.makeUnaryRequest(
        FETCH_SECRETS_PATH,
        m.requestSerialize,
        m.responseDeserialize,
        { versionInfo: '', resourceNames: [...names], typeUrl: SECRET_TYPE_URL, ...(this.#options.node ? { node: this.#options.node } : {}) },
        { deadline: Date.now() + timeoutMs },
        (err, resp) => {
          if (err) {
            reject(new MeshError(err.code === Status.PERMISSION_DENIED ? ErrorCodes.PERMISSION_DENIED : err.code === Status.UNAUTHENTICATED ? ErrorCodes.UNAUTHENTICATED : ErrorCodes.UNAVAILABLE, `FetchSecrets from ${this.#options.target}: ${err.details || err.message}`, { cause: err }));
            return;
          }
          const secrets: ReceivedSecret[] = [];
          const errors: string[] = [];
          for (const r of resp?.resources ?? []) {
            const d = decodeSecretResource(r);
            if (d.valid) secrets.push(d.secret);
            else errors.push(...d.errors);
          }
          resolve({ version: resp?.versionInfo ?? '', secrets, errors });
        },
      );
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    const call = this.#call;
    this.#call = null;
    call?.cancel();
    this.#client.close();
    this.#connected = false;
  }

  #write(req: DiscoveryRequestMessage): void {
    try {
      this.#call?.write(req);
    } catch (err) {
      this.#logger.debug({ err: String(err) }, 'SDS client write failed; the stream is going away');
    }
  }

  #connect(): void {
    if (this.#closed) return;
    const m = sdsProtos().stream;
    const call = this.#client.makeBidiStreamRequest(STREAM_SECRETS_PATH, m.requestSerialize, m.responseDeserialize);
    this.#call = call;
    this.#lastNonce = '';
    call.on('data', (resp: DiscoveryResponseMessage) => {
      if (this.#call !== call) return;
      this.#onResponse(resp);
    });
    call.on('error', () => undefined); // the 'status' event carries it
    call.on('status', (st: StatusObject) => this.#onGone(call, st));
    // The version held goes first, so that a server with the same content need not resend it.
    this.#write({
      versionInfo: this.#version,
      ...(this.#options.node ? { node: this.#options.node } : {}),
      resourceNames: [...this.#names],
      typeUrl: SECRET_TYPE_URL,
      responseNonce: '',
    });
    call.on('metadata', () => {
      if (this.#call !== call) return;
      this.#connected = true;
      this.emit('connected');
    });
  }

  #onResponse(resp: DiscoveryResponseMessage): void {
    this.#attempts = 0;
    if (!this.#connected) {
      this.#connected = true;
      this.emit('connected');
    }
    const nonce = resp.nonce ?? '';
    const version = resp.versionInfo ?? '';
    this.#lastNonce = nonce;
    const errors: string[] = [];
    if (resp.typeUrl && resp.typeUrl !== SECRET_TYPE_URL) errors.push(`type_url ${resp.typeUrl}: expected ${SECRET_TYPE_URL}`);
    else {
      const now = new Date();
      for (const r of resp.resources ?? []) {
        const d = decodeSecretResource(r);
        if (!d.valid) {
          errors.push(...d.errors);
          continue;
        }
        // Resources not asked for are ignored, as the protocol says.
        if (!this.#names.has(d.secret.name)) continue;
        const prev = this.#secrets.get(d.secret.name);
        const secret: ClientSecret = { ...d.secret, version, receivedAt: now };
        this.#secrets.set(d.secret.name, secret);
        if (!prev || prev.digest !== secret.digest) this.emit('secret', secret);
      }
    }
    if (errors.length) {
      // NACK: the previous version, this nonce, and why.
      this.#logger.warn({ target: this.#options.target, version, nonce, errors }, 'SDS response rejected (NACK); the last good secrets stay');
      this.#write({
        versionInfo: this.#version,
        resourceNames: [...this.#names],
        typeUrl: SECRET_TYPE_URL,
        responseNonce: nonce,
        errorDetail: { code: Status.INVALID_ARGUMENT, message: errors.join('; ') },
      });
      this.emit('nack', { nonce, rejectedVersion: version, errors } satisfies NackEvent);
      return;
    }
    this.#version = version;
    this.#write({ versionInfo: version, resourceNames: [...this.#names], typeUrl: SECRET_TYPE_URL, responseNonce: nonce });
    this.emit('ack', { nonce, version });
  }

  #onGone(call: ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>, st: StatusObject): void {
    if (this.#call !== call) return;
    this.#call = null;
    this.#connected = false;
    if (this.#closed) return;
    const initial = this.#options.backoff?.initialMs ?? 250;
    const max = this.#options.backoff?.maxMs ?? 30_000;
    const jitter = this.#options.backoff?.jitter ?? 0.2;
    const base = Math.min(max, initial * 2 ** this.#attempts);
    const delay = Math.max(0, Math.round(base * (1 - jitter + Math.random() * 2 * jitter)));
    this.#attempts++;
    const event: DisconnectEvent = { code: st.code, details: st.details, retryInMs: delay };
    this.#logger.info({ target: this.#options.target, code: Status[st.code] ?? st.code, details: st.details, retryInMs: delay }, 'SDS stream ended; reconnecting');
    this.emit('disconnected', event);
    this.#retry = setTimeout(() => {
      this.#retry = null;
      this.#connect();
    }, delay);
    this.#retry.unref();
  }
}
