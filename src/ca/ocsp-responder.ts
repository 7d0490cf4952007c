import { createHash } from 'node:crypto';
import { describeError, silentLogger, wholeSeconds, type Clock, type Logger } from '../core/index.js';
import {
  OCSP_HASH_ALGORITHMS,
  buildOcspErrorResponse,
  buildOcspResponse,
  certIdForSerial,
  generateKeyPair,
  normalizeSerial,
  scanOcspRequest,
  toSigningKey,
  type Certificate,
  type OcspCertStatusSpec,
  type OcspErrorStatus,
  type OcspHashAlgorithm,
  type OcspResponder as SignerPair,
  type ScannedCertId,
} from '../pki/index.js';
import type { CertificateIssuer } from './certificate-issuer.js';
import { ledgerStatus } from './ocsp-signer.js';

export type OcspCertOutcome = 'good' | 'revoked' | 'unknown';
export type OcspOutcome = OcspCertOutcome | OcspErrorStatus;

/** A signed answer: the DER to send and the times HTTP caching headers are made from. */
export interface SignedOcspAnswer {
  outcome: OcspCertOutcome;
  der: Buffer;
  thisUpdate: Date;
  nextUpdate: Date;
  producedAt: Date;
  /** A strong entity tag (quoted), the SHA-1 of the DER. */
  etag: string;
}

/** An unsigned error answer (RFC 6960 §2.3) and why, for logs and metrics. */
export interface OcspErrorAnswer {
  outcome: OcspErrorStatus;
  der: Buffer;
  reason: string;
}

export type OcspAnswer = SignedOcspAnswer | OcspErrorAnswer;

export function isSignedAnswer(a: OcspAnswer): a is SignedOcspAnswer {
  return a.outcome === 'good' || a.outcome === 'revoked' || a.outcome === 'unknown';
}

const ERROR_DER = new Map<OcspErrorStatus, Buffer>(
  (['malformedRequest', 'internalError', 'tryLater', 'unauthorized'] as const).map((s) => [s, buildOcspErrorResponse(s)]),
);

/** An error answer; its DER is made once per status (it carries nothing but the status). */
export function ocspErrorAnswer(outcome: OcspErrorStatus, reason: string): OcspErrorAnswer {
  return { outcome, der: ERROR_DER.get(outcome) ?? buildOcspErrorResponse(outcome), reason };
}

export interface OcspResponderOptions {
  /** Issues the delegated signer (CertificateIssuer.issueOcspSigner) and gives the CA and ledger. */
  issuer: CertificateIssuer;
  /** nextUpdate − thisUpdate of every response; responses are re-signed at half of it. */
  responseValidityMs: number;
  /** Lifetime of the delegated signer certificate; renewed at `signerRenewAt` of it. */
  signerTtlMs: number;
  signerRenewAt?: number;
  /** Cached responses kept at most (oldest dropped first); unknown serials get at most a tenth of them. */
  maxEntries?: number;
  logger?: Logger;
  /** Called with each new signer certificate (metrics: its expiry). */
  onSigner?: (cert: Certificate) => void;
  /** Called after each signer renewal attempt on the timer or on revocation. */
  onSignerRenewal?: (ok: boolean) => void;
  /** Called after each signature made (a cache miss or a refresh), with the time it took. */
  onSigned?: (outcome: OcspCertOutcome, seconds: number) => void;
}

interface Entry {
  answer: SignedOcspAnswer;
  serial: string;
  hash: OcspHashAlgorithm;
  refreshAtMs: number;
  expiresMs: number;
}

interface Signer extends SignerPair {
  generation: number;
}

/**
 * The online OCSP responder's logic, with no transport: request bytes in, response bytes out.
 *
 * Responses are signed by a delegated signer that the responder issues to itself through the CA (EKU OCSPSigning,
 * id-pkix-ocsp-nocheck, a key that never touches the disk) and renews at half its life. They are pre-signed in the
 * sense of RFC 5019: one response per (CertID as the client sent it), made on first demand, served from memory
 * until half its validity has passed, then served once more while a fresh one is signed in the background.
 * Nonces are not echoed (RFC 5019 §2.2.1 allows it, and a cached response cannot): clients that insist on one
 * (OpenSSL warns "No nonce in response") get the cacheable answer anyway.
 *
 * Keys: the CertID's bytes, so an answer is found by one Map lookup once the request is read (repeated request
 * bytes are read once: see scanOcspRequest) and repeats the client's hash algorithm (SHA-1 or SHA-256). `invalidate(serial)` drops every cached answer
 * for a serial and re-signs it from the ledger at once; revocation calls it after the ledger has committed.
 */
export class OcspResponder {
  readonly name = 'ocsp';
  readonly #issuer: CertificateIssuer;
  readonly #validityMs: number;
  readonly #signerTtlMs: number;
  readonly #renewAt: number;
  readonly #maxEntries: number;
  readonly #maxUnknown: number;
  readonly #logger: Logger;
  readonly #opts: OcspResponderOptions;
  readonly #clock: Clock;
  /** Issuer name and key hashes of our CA per hash algorithm: a CertID naming anything else is not ours. */
  readonly #ours = new Map<OcspHashAlgorithm, { name: Buffer; key: Buffer }>();
  readonly #cache = new Map<string, Entry>();
  readonly #bySerial = new Map<string, Set<string>>();
  readonly #pending = new Map<string, Promise<OcspAnswer>>();
  /** Bumped by invalidate(): an answer signed from a ledger read made before it is not cached. */
  readonly #serialGeneration = new Map<string, number>();
  #unknownEntries = 0;
  #signer: Signer | null = null;
  #signerGeneration = 0;
  #renewing: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #sweeper: NodeJS.Timeout | null = null;
  #stopped = false;
  /** Plain counters for tests and benchmarks; metrics come through the callbacks and the transport. */
  readonly stats = { hits: 0, misses: 0, signed: 0, refreshes: 0 };

  constructor(options: OcspResponderOptions) {
    this.#opts = options;
    this.#issuer = options.issuer;
    this.#validityMs = options.responseValidityMs;
    this.#signerTtlMs = options.signerTtlMs;
    this.#renewAt = options.signerRenewAt ?? 0.5;
    this.#maxEntries = options.maxEntries ?? 50_000;
    this.#maxUnknown = Math.max(1, Math.floor(this.#maxEntries / 10));
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.issuer.ca.clock;
    const caCert = options.issuer.ca.cert;
    for (const hash of OCSP_HASH_ALGORITHMS) {
      const id = certIdForSerial('1', caCert, hash);
      this.#ours.set(hash, { name: id.issuerNameHash, key: id.issuerKeyHash });
    }
  }

  /** The current delegated signer certificate (null before start()). */
  get signerCertificate(): Certificate | null {
    return this.#signer?.cert ?? null;
  }

  /** Number of cached responses. */
  get size(): number {
    return this.#cache.size;
  }

  /** Issues the first signer certificate and schedules its renewals and the cache sweep. */
  async start(): Promise<void> {
    await this.renewSigner();
    const every = Math.max(1_000, Math.min(this.#validityMs / 2, 600_000));
    this.#sweeper = setInterval(() => this.#sweep(), every);
    this.#sweeper.unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#timer = this.#sweeper = null;
  }

  /** Whether the responder can sign now, and if not, why. */
  health(): { ok: true } | { ok: false; reason: string } {
    const s = this.#signer;
    if (!s) return { ok: false, reason: 'the OCSP signer certificate has not been issued' };
    if (s.cert.notAfter.getTime() <= this.#clock.now().getTime()) {
      return { ok: false, reason: `the OCSP signer certificate expired at ${s.cert.notAfter.toISOString()} and renewal has failed` };
    }
    return { ok: true };
  }

  /**
   * The answer to a DER OCSPRequest. Synchronous when the answer is cached (the hot path: a scan, a Map lookup, a
   * clock read), a Promise when it has to be signed first.
   */
  answer(request: Uint8Array): OcspAnswer | Promise<OcspAnswer> {
    let ids: ScannedCertId[];
    try {
      ids = scanOcspRequest(request).certIds;
    } catch (err) {
      return ocspErrorAnswer('malformedRequest', describeError(err));
    }
    return this.answerIds(ids);
  }

  /** The answer for the CertIDs of a request already scanned (see OcspRouter, which picks the responder by them). */
  answerIds(ids: readonly ScannedCertId[]): OcspAnswer | Promise<OcspAnswer> {
    if (ids.length !== 1) return this.#answerMany(ids);
    const id = ids[0]!;
    const key = id.der.toString('latin1');
    const entry = this.#cache.get(key);
    if (entry) {
      const now = this.#clock.now().getTime();
      if (now < entry.refreshAtMs) {
        this.stats.hits++;
        return entry.answer;
      }
      if (now < entry.expiresMs) {
        // Half its validity is gone: still good to send, and a fresh one is signed for the next request.
        this.stats.hits++;
        if (!this.#pending.has(key)) {
          this.stats.refreshes++;
          void this.#fill(key, entry.hash, entry.serial);
        }
        return entry.answer;
      }
    }
    const refused = this.#refusal(id);
    if (refused) return refused;
    this.stats.misses++;
    return this.#pending.get(key) ?? this.#fill(key, id.hash!, id.serial);
  }

  /** Whether a CertID names this responder's CA (issuer name and key hashes, in a hash algorithm we compute). */
  issues(id: ScannedCertId): boolean {
    return this.#refusal(id) === null;
  }

  /**
   * Forgets every cached answer for `serial` and signs fresh ones from the ledger at once, so the next request
   * already sees the revocation. Call it after the ledger has committed the change.
   */
  invalidate(serialText: string): void {
    const serial = normalizeSerial(serialText);
    this.#serialGeneration.set(serial, (this.#serialGeneration.get(serial) ?? 0) + 1);
    if (this.#signer && this.#signer.cert.serial === serial) {
      // Our own signer was revoked: every cached answer carries it. Start over with a new one.
      this.#logger.warn({ serial }, 'the OCSP signer certificate was revoked; issuing a new one and dropping every cached response');
      this.#signer = null;
      this.#clear();
      void this.renewSigner().then(
        () => this.#opts.onSignerRenewal?.(true),
        (err: unknown) => {
          this.#opts.onSignerRenewal?.(false);
          this.#logger.error({ error: describeError(err) }, 'OCSP signer re-issuance after revocation failed');
          this.#scheduleRetry();
        },
      );
      return;
    }
    const keys = this.#bySerial.get(serial);
    if (!keys) return;
    for (const key of [...keys]) {
      const entry = this.#cache.get(key);
      this.#delete(key);
      this.#pending.delete(key);
      if (entry) void this.#fill(key, entry.hash, serial);
    }
  }

  /** Issues a new signer certificate and key now (concurrent calls share one issuance). */
  renewSigner(): Promise<void> {
    this.#renewing ??= this.#issueSigner().finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  async #issueSigner(): Promise<void> {
    // A fresh key each time, in memory only: a responder key never outlives its certificate.
    const keys = generateKeyPair('ec-p256');
    const issued = await this.#issuer.issueOcspSigner(keys.publicKey, this.#signerTtlMs);
    const signer = await toSigningKey(keys.privateKey);
    if (this.#stopped) return;
    this.#signer = { cert: issued.cert, signer, generation: ++this.#signerGeneration };
    this.#opts.onSigner?.(issued.cert);
    this.#logger.info(
      { serial: issued.cert.serial, notAfter: issued.cert.notAfter.toISOString(), ...(issued.ttlNote ? { note: issued.ttlNote } : {}) },
      'OCSP signer certificate issued',
    );
    const now = this.#clock.now().getTime();
    const lifetime = Math.max(0, issued.cert.notAfter.getTime() - now);
    this.#arm(lifetime * this.#renewAt, () => this.#renewOnTimer());
  }

  #renewOnTimer(): void {
    this.renewSigner().then(
      () => this.#opts.onSignerRenewal?.(true),
      (err: unknown) => {
        this.#opts.onSignerRenewal?.(false);
        this.#logger.error({ error: describeError(err) }, 'OCSP signer renewal failed; keeping the current one');
        this.#scheduleRetry();
      },
    );
  }

  #scheduleRetry(): void {
    const left = this.#signer ? this.#signer.cert.notAfter.getTime() - this.#clock.now().getTime() : 0;
    this.#arm(Math.min(60_000, Math.max(1_000, left / 10)), () => this.#renewOnTimer());
  }

  #arm(delayMs: number, fn: () => void): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    // setTimeout fires at once for delays beyond 2^31-1 ms; re-arm in steps.
    const MAX = 2_147_000_000;
    this.#timer = setTimeout(() => (delayMs > MAX ? this.#arm(delayMs - MAX, fn) : fn()), Math.max(0, Math.min(delayMs, MAX)));
    this.#timer.unref();
  }

  /** unauthorized for a CertID that names no issuer of ours (or a hash we cannot compare with), else null. */
  #refusal(id: ScannedCertId): OcspErrorAnswer | null {
    if (!id.hash) return ocspErrorAnswer('unauthorized', 'CertID hash algorithm not supported');
    const ours = this.#ours.get(id.hash)!;
    if (!ours.name.equals(id.issuerNameHash) || !ours.key.equals(id.issuerKeyHash)) {
      return ocspErrorAnswer('unauthorized', 'CertID names an issuer this responder does not serve');
    }
    return null;
  }

  #fill(key: string, hash: OcspHashAlgorithm, serial: string): Promise<OcspAnswer> {
    const p = this.#sign(key, hash, serial).finally(() => {
      if (this.#pending.get(key) === p) this.#pending.delete(key);
    });
    this.#pending.set(key, p);
    return p;
  }

  async #sign(key: string, hash: OcspHashAlgorithm, serial: string): Promise<OcspAnswer> {
    const generation = this.#serialGeneration.get(serial) ?? 0;
    const signer = this.#signer ?? (await this.#renewing?.then(() => this.#signer, () => null)) ?? null;
    if (!signer) return ocspErrorAnswer('tryLater', 'no OCSP signer certificate yet');
    try {
      const started = performance.now();
      const ca = this.#issuer.ca;
      const status = await ledgerStatus(ca, this.#issuer.ledger, serial);
      const now = wholeSeconds(this.#clock.now());
      const nextUpdate = new Date(Math.min(now.getTime() + this.#validityMs, signer.cert.notAfter.getTime()));
      const der = await buildOcspResponse({
        responder: signer,
        responses: [{ certId: { ...this.#ourCertId(hash), serial }, status, thisUpdate: now, nextUpdate }],
        producedAt: now,
      });
      const outcome = outcomeOf(status);
      const answer: SignedOcspAnswer = {
        outcome,
        der,
        thisUpdate: now,
        nextUpdate,
        producedAt: now,
        etag: `"${createHash('sha1').update(der).digest('hex')}"`,
      };
      this.stats.signed++;
      this.#opts.onSigned?.(outcome, (performance.now() - started) / 1000);
      // Not cached when a revocation (or a new signer) came in while it was being made: it may be stale already.
      const current = (this.#serialGeneration.get(serial) ?? 0) === generation && this.#signer?.generation === signer.generation;
      if (current && !this.#stopped) {
        const validity = nextUpdate.getTime() - now.getTime();
        this.#store(key, { answer, serial, hash, refreshAtMs: now.getTime() + validity / 2, expiresMs: nextUpdate.getTime() });
      }
      return answer;
    } catch (err) {
      this.#logger.error({ serial, error: describeError(err) }, 'OCSP response signing failed');
      return ocspErrorAnswer('internalError', `signing failed: ${describeError(err)}`);
    }
  }

  #ourCertId(hash: OcspHashAlgorithm): { hashAlgorithm: OcspHashAlgorithm; issuerNameHash: Buffer; issuerKeyHash: Buffer } {
    const ours = this.#ours.get(hash)!;
    return { hashAlgorithm: hash, issuerNameHash: ours.name, issuerKeyHash: ours.key };
  }

  /** Several CertIDs in one request (RFC 5019 clients send one): signed for this request, not cached. */
  async #answerMany(ids: readonly ScannedCertId[]): Promise<OcspAnswer> {
    for (const id of ids) {
      const refused = this.#refusal(id);
      if (refused) return refused;
    }
    const signer = this.#signer ?? (await this.#renewing?.then(() => this.#signer, () => null)) ?? null;
    if (!signer) return ocspErrorAnswer('tryLater', 'no OCSP signer certificate yet');
    this.stats.misses++;
    try {
      const ca = this.#issuer.ca;
      const statuses = await Promise.all(ids.map((id) => ledgerStatus(ca, this.#issuer.ledger, id.serial)));
      const now = wholeSeconds(this.#clock.now());
      const nextUpdate = new Date(Math.min(now.getTime() + this.#validityMs, signer.cert.notAfter.getTime()));
      const der = await buildOcspResponse({
        responder: signer,
        responses: ids.map((id, i) => ({ certId: { ...this.#ourCertId(id.hash!), serial: id.serial }, status: statuses[i]!, thisUpdate: now, nextUpdate })),
        producedAt: now,
      });
      this.stats.signed++;
      // The outcome of a multi-certificate answer, for metrics: the worst of its statuses.
      const outcomes = statuses.map(outcomeOf);
      const outcome = outcomes.includes('revoked') ? 'revoked' : outcomes.includes('unknown') ? 'unknown' : 'good';
      return { outcome, der, thisUpdate: now, nextUpdate, producedAt: now, etag: `"${createHash('sha1').update(der).digest('hex')}"` };
    } catch (err) {
      this.#logger.error({ error: describeError(err) }, 'OCSP response signing failed');
      return ocspErrorAnswer('internalError', `signing failed: ${describeError(err)}`);
    }
  }

  #store(key: string, entry: Entry): void {
    const unknown = entry.answer.outcome === 'unknown';
    if (this.#cache.has(key)) this.#delete(key);
    // Unknown serials are capped apart: random serials must not push out the answers real clients need.
    else if (unknown && this.#unknownEntries >= this.#maxUnknown) return;
    this.#cache.set(key, entry);
    if (unknown) this.#unknownEntries++;
    let keys = this.#bySerial.get(entry.serial);
    if (!keys) this.#bySerial.set(entry.serial, (keys = new Set()));
    keys.add(key);
    // Oldest first: Map iteration is insertion order, and a refresh re-inserts.
    while (this.#cache.size > this.#maxEntries) this.#delete(this.#cache.keys().next().value!);
  }

  #delete(key: string): void {
    const entry = this.#cache.get(key);
    if (!entry) return;
    this.#cache.delete(key);
    if (entry.answer.outcome === 'unknown') this.#unknownEntries--;
    const keys = this.#bySerial.get(entry.serial);
    keys?.delete(key);
    if (keys?.size === 0) this.#bySerial.delete(entry.serial);
  }

  #clear(): void {
    this.#cache.clear();
    this.#bySerial.clear();
    this.#pending.clear();
    this.#unknownEntries = 0;
  }

  /** Drops answers past their nextUpdate that nobody asked for again. */
  #sweep(): void {
    const now = this.#clock.now().getTime();
    for (const [key, entry] of this.#cache) if (now >= entry.expiresMs) this.#delete(key);
  }
}

function outcomeOf(status: OcspCertStatusSpec): OcspCertOutcome {
  return status === 'good' ? 'good' : status === 'unknown' ? 'unknown' : 'revoked';
}
