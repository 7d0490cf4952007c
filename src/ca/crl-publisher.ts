import { createHash } from 'node:crypto';
import { describeError, silentLogger, type Logger } from '../core/index.js';
import type { Ledger } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';
import { makeCrl } from './crl-signer.js';

/** The CRL being served, with what HTTP caching and metrics need, made once per CRL. */
export interface PublishedCrl {
  der: Buffer;
  /** PEM with the label OpenSSL expects (`X509 CRL`). */
  pem: string;
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: number;
  /** A strong entity tag (quoted), the SHA-1 of the DER. */
  etag: string;
}

export interface CrlPublisherOptions {
  ca: CertificateAuthority;
  ledger: Ledger;
  /** nextUpdate − thisUpdate; a new CRL is made at half of it, and on every revocation. */
  validityMs: number;
  logger?: Logger;
  onPublish?: (crl: PublishedCrl) => void;
  /** Called after each CRL generation attempt. */
  onGeneration?: (ok: boolean, seconds: number) => void;
}

/**
 * Keeps the CA's current CRL in memory: made at start, again at half its validity (well before nextUpdate), and
 * after every revocation. Revocations that arrive while a CRL is being made are folded into the next one, so a
 * burst of revocations costs two CRLs, not one per revocation, and each caller still waits only for a CRL made
 * after its own ledger commit.
 */
export class CrlPublisher {
  readonly name = 'crl';
  readonly #opts: CrlPublisherOptions;
  readonly #logger: Logger;
  #current: PublishedCrl | null = null;
  #running = false;
  #waiters: Array<{ resolve: (c: PublishedCrl) => void; reject: (e: unknown) => void }> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(options: CrlPublisherOptions) {
    this.#opts = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** The CRL now served (null before start()). */
  get current(): PublishedCrl | null {
    return this.#current;
  }

  async start(): Promise<PublishedCrl> {
    return this.invalidate();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /**
   * Asks for a new CRL; resolves with the first CRL made from a ledger read that started after this call (so a
   * revocation committed before it is in). The serial is not needed: a CRL lists every revocation.
   */
  invalidate(_serial?: string): Promise<PublishedCrl> {
    return new Promise((resolve, reject) => {
      (this.#waiters ??= []).push({ resolve, reject });
      if (!this.#running) void this.#run();
    });
  }

  /** Whether the served CRL is still current, and if not, why. */
  health(): { ok: true } | { ok: false; reason: string } {
    const c = this.#current;
    if (!c) return { ok: false, reason: 'no CRL has been made' };
    if (c.nextUpdate.getTime() <= this.#opts.ca.clock.now().getTime()) {
      return { ok: false, reason: `the CRL passed its nextUpdate ${c.nextUpdate.toISOString()} and a new one could not be made` };
    }
    return { ok: true };
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      while (this.#waiters) {
        const waiters = this.#waiters;
        this.#waiters = null;
        try {
          const crl = await this.#generate();
          for (const w of waiters) w.resolve(crl);
        } catch (err) {
          for (const w of waiters) w.reject(err);
        }
      }
    } finally {
      this.#running = false;
    }
  }

  async #generate(): Promise<PublishedCrl> {
    const started = performance.now();
    try {
      const made = await makeCrl(this.#opts.ca, this.#opts.ledger, { validityMs: this.#opts.validityMs });
      const crl: PublishedCrl = {
        der: made.der,
        pem: made.crl.pem,
        crlNumber: made.crlNumber,
        thisUpdate: made.crl.thisUpdate,
        nextUpdate: made.crl.nextUpdate ?? new Date(made.crl.thisUpdate.getTime() + this.#opts.validityMs),
        entries: made.crl.entries.length,
        etag: `"${createHash('sha1').update(made.der).digest('hex')}"`,
      };
      if (!this.#stopped) this.#current = crl;
      this.#opts.onGeneration?.(true, (performance.now() - started) / 1000);
      this.#opts.onPublish?.(crl);
      this.#logger.debug({ crlNumber: crl.crlNumber.toString(), entries: crl.entries, bytes: crl.der.length }, 'CRL published');
      this.#schedule((crl.nextUpdate.getTime() - crl.thisUpdate.getTime()) / 2);
      return crl;
    } catch (err) {
      this.#opts.onGeneration?.(false, (performance.now() - started) / 1000);
      // Keep serving the last CRL (still valid until its nextUpdate) and try again soon.
      const left = this.#current ? this.#current.nextUpdate.getTime() - this.#opts.ca.clock.now().getTime() : 0;
      const retry = Math.min(60_000, Math.max(1_000, left / 10));
      this.#logger.error({ error: describeError(err), retryInMs: Math.round(retry) }, 'CRL generation failed; keeping the current CRL');
      this.#schedule(retry);
      throw err;
    }
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    const MAX = 2_147_000_000;
    const step = Math.max(0, Math.min(delayMs, MAX));
    this.#timer = setTimeout(() => {
      if (delayMs > MAX) return this.#schedule(delayMs - MAX);
      this.invalidate().catch(() => undefined);
    }, step);
    this.#timer.unref();
  }
}
