// A bare StreamSecrets stream for protocol tests: the test decides every request (versions, nonces, NACKs), and
// reads responses one by one, so what the server sends and does not send can be asserted exactly.
import { Client, credentials, type ChannelCredentials, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import {
  SECRET_TYPE_URL,
  STREAM_SECRETS_PATH,
  sdsProtos,
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  type SecretMessage,
} from '../../src/sds/index.js';

export class RawSdsStream {
  readonly client: Client;
  readonly call: ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>;
  readonly #queue: DiscoveryResponseMessage[] = [];
  #waiters: Array<() => void> = [];
  status: StatusObject | null = null;

  constructor(target: string, creds: ChannelCredentials = credentials.createInsecure(), options: Record<string, unknown> = {}) {
    this.client = new Client(target, creds, options);
    const m = sdsProtos().stream;
    this.call = this.client.makeBidiStreamRequest(STREAM_SECRETS_PATH, m.requestSerialize, m.responseDeserialize);
    this.call.on('data', (r: DiscoveryResponseMessage) => {
      this.#queue.push(r);
      this.#wake();
    });
    this.call.on('error', () => undefined);
    this.call.on('status', (s: StatusObject) => {
      this.status = s;
      this.#wake();
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  send(req: DiscoveryRequestMessage): void {
    this.call.write({ typeUrl: SECRET_TYPE_URL, ...req });
  }

  /** The next response, or an error after `ms`. */
  async next(ms = 3000): Promise<DiscoveryResponseMessage> {
    const end = Date.now() + ms;
    while (this.#queue.length === 0) {
      if (this.status) throw new Error(`stream ended: ${this.status.code} ${this.status.details}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no response within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.#queue.shift()!;
  }

  /** Asserts that nothing arrives for `ms`. */
  async none(ms = 300): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    if (this.#queue.length) throw new Error(`unexpected response: ${JSON.stringify(summary(this.#queue[0]!))}`);
  }

  /** The status once the server ends the stream. */
  async ended(ms = 3000): Promise<StatusObject> {
    const end = Date.now() + ms;
    while (!this.status) {
      if (Date.now() > end) throw new Error(`stream still open after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.status;
  }

  ack(resp: DiscoveryResponseMessage, names: string[]): void {
    this.send({ versionInfo: resp.versionInfo ?? '', resourceNames: names, responseNonce: resp.nonce ?? '' });
  }

  nack(resp: DiscoveryResponseMessage, previousVersion: string, names: string[], message: string): void {
    this.send({ versionInfo: previousVersion, resourceNames: names, responseNonce: resp.nonce ?? '', errorDetail: { code: 3, message } });
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

/** The parts of a response tests look at. */
export function summary(resp: DiscoveryResponseMessage): { version: string; nonce: string; names: string[] } {
  return { version: resp.versionInfo ?? '', nonce: resp.nonce ?? '', names: (resp.resources ?? []).map((r) => (r as SecretMessage).name ?? '?') };
}

export function secretsOf(resp: DiscoveryResponseMessage): SecretMessage[] {
  return (resp.resources ?? []) as SecretMessage[];
}
