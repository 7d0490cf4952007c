import { ErrorCodes, MeshError } from '../core/index.js';
import type {
  AuditEvent,
  AuditEventInput,
  Ledger,
  LedgerCounts,
  LedgerEntry,
  ListQuery,
  NewLedgerEntry,
  RevocationReason,
  RevokeResult,
} from './ledger.js';

export interface BatchingLedgerOptions {
  /**
   * Most entries per transaction. A batch is committed when the event-loop turn in which its entries arrived ends,
   * or as soon as it is full, whichever comes first. Default 256.
   */
  maxBatch?: number;
}

export interface BatchingLedgerStats {
  /** recordMany transactions attempted. */
  batches: number;
  /** Entries that went through record(). */
  entries: number;
  largestBatch: number;
  /** Batches whose transaction failed, after which each of their entries was retried alone. */
  failedBatches: number;
  /** Entries retried alone after a failed batch. */
  retriedEntries: number;
}

interface Pending {
  entry: NewLedgerEntry;
  resolve: (entry: LedgerEntry) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for the issuance hot path: concurrent `record()` calls are gathered into one `recordMany`
 * transaction per event-loop turn (or per `maxBatch` entries), so a CA issuing thousands of certificates a second
 * pays one commit per batch instead of one per certificate.
 *
 * The Ledger guarantee is unchanged for each caller: its promise resolves only after the transaction holding ITS
 * row has committed, with the stored entry, so a certificate is never handed out before the ledger knows it. When a
 * batch fails (one duplicate serial or invalid entry fails the whole transaction, and nothing of it is recorded),
 * every entry of it is retried alone, so each caller gets its own outcome and one bad entry never fails its
 * neighbours. One batch is in flight at a time; entries arriving meanwhile form the next one, committed on a later
 * turn so that I/O keeps being served between batches. Every other method goes straight to the wrapped ledger.
 *
 * An entry must not be changed by its caller until its promise settles (the wrapped ledger reads it at commit).
 */
export class BatchingLedger implements Ledger {
  readonly #inner: Ledger;
  readonly #maxBatch: number;
  #pending: Pending[] = [];
  #inFlight: Promise<void> | null = null;
  #timer: NodeJS.Immediate | null = null;
  #closed = false;
  readonly #stats: BatchingLedgerStats = { batches: 0, entries: 0, largestBatch: 0, failedBatches: 0, retriedEntries: 0 };

  constructor(inner: Ledger, options: BatchingLedgerOptions = {}) {
    const maxBatch = options.maxBatch ?? 256;
    if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `maxBatch must be a whole number ≥ 1, not ${String(options.maxBatch)}`, {
        subject: 'maxBatch',
      });
    }
    this.#inner = inner;
    this.#maxBatch = maxBatch;
  }

  /** The wrapped ledger. */
  get inner(): Ledger {
    return this.#inner;
  }

  /** A snapshot of the counters (for metrics and benchmarks). */
  get stats(): BatchingLedgerStats {
    return { ...this.#stats };
  }

  record(entry: NewLedgerEntry): Promise<LedgerEntry> {
    // After close() the wrapped ledger reports its own "closed" error.
    if (this.#closed) return this.#inner.record(entry);
    return new Promise<LedgerEntry>((resolve, reject) => {
      this.#pending.push({ entry, resolve, reject });
      this.#stats.entries++;
      if (this.#inFlight) return; // taken up when the batch in flight settles
      if (this.#pending.length >= this.#maxBatch) this.#flush();
      else this.#schedule();
    });
  }

  /** Resolves once every record() made before the call has settled (committed or failed). */
  async flush(): Promise<void> {
    while (this.#inFlight || this.#pending.length > 0) {
      if (this.#inFlight) await this.#inFlight;
      else this.#flush();
    }
  }

  /** Commits what is pending, then closes the wrapped ledger. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    if (this.#timer) clearImmediate(this.#timer);
    this.#timer = null;
    await this.#inner.close();
  }

  #schedule(): void {
    // setImmediate, not a microtask: it runs after the I/O callbacks of this turn, so everything that arrived in
    // the turn joins the batch, and a stream of batches cannot starve the event loop.
    this.#timer ??= setImmediate(() => {
      this.#timer = null;
      if (!this.#inFlight && this.#pending.length > 0) this.#flush();
    });
  }

  #flush(): void {
    const batch = this.#pending.length <= this.#maxBatch ? this.#pending : this.#pending.slice(0, this.#maxBatch);
    this.#pending = batch === this.#pending ? [] : this.#pending.slice(this.#maxBatch);
    this.#stats.batches++;
    if (batch.length > this.#stats.largestBatch) this.#stats.largestBatch = batch.length;
    this.#inFlight = this.#commit(batch).finally(() => {
      this.#inFlight = null;
      if (this.#pending.length > 0) this.#schedule();
    });
  }

  async #commit(batch: Pending[]): Promise<void> {
    let stored: LedgerEntry[];
    try {
      stored = await this.#inner.recordMany(batch.map((p) => p.entry));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // Nothing of the batch was recorded (recordMany is all-or-nothing): each entry alone, in order, so the good
      // ones are committed and each caller gets the error of its own entry, not its neighbour's.
      this.#stats.failedBatches++;
      this.#stats.retriedEntries += batch.length;
      for (const p of batch) {
        try {
          p.resolve(await this.#inner.record(p.entry));
        } catch (e) {
          p.reject(e);
        }
      }
      return;
    }
    if (stored.length !== batch.length) {
      // A backend bug; the rows may well be committed, but no caller can be told which entry is its own.
      const err = new MeshError(
        ErrorCodes.INTERNAL,
        `ledger recordMany returned ${stored.length} entries for ${batch.length}; cannot tell callers apart`,
      );
      for (const p of batch) p.reject(err);
      return;
    }
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(stored[i]!);
  }

  // ---- delegated ----

  recordMany(entries: NewLedgerEntry[]): Promise<LedgerEntry[]> {
    return this.#inner.recordMany(entries);
  }

  get(serial: string, issuerKeyId?: string): Promise<LedgerEntry | null> {
    return this.#inner.get(serial, issuerKeyId);
  }

  list(query?: ListQuery): Promise<LedgerEntry[]> {
    return this.#inner.list(query);
  }

  revoke(serial: string, reason: RevocationReason, at: Date, invalidityDate?: Date, issuerKeyId?: string): Promise<RevokeResult> {
    return this.#inner.revoke(serial, reason, at, invalidityDate, issuerKeyId);
  }

  listRevoked(issuerKeyId?: string, notExpiredAt?: Date): Promise<LedgerEntry[]> {
    return this.#inner.listRevoked(issuerKeyId, notExpiredAt);
  }

  nextCrlNumber(issuerKeyId: string): Promise<bigint> {
    return this.#inner.nextCrlNumber(issuerKeyId);
  }

  consumeToken(tokenId: string, at: Date): Promise<boolean> {
    return this.#inner.consumeToken(tokenId, at);
  }

  audit(event: AuditEventInput): Promise<void> {
    return this.#inner.audit(event);
  }

  auditEvents(limit?: number): Promise<AuditEvent[]> {
    return this.#inner.auditEvents(limit);
  }

  counts(): Promise<LedgerCounts> {
    return this.#inner.counts();
  }
}
