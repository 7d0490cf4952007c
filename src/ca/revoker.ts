import { describeError, silentLogger, type Logger } from '../core/index.js';
import type { RevocationReason } from '../pki/index.js';
import type { Ledger, RevokeResult } from '../store/index.js';
import type { CertificateAuthority } from './authority.js';
import { revokeCertificate } from './revocation.js';

/** Something that serves revocation status from a cache: told after each revocation the ledger has committed. */
export interface RevocationListener {
  readonly name: string;
  /** May return a promise that settles once the change is being served (a new CRL). */
  invalidate(serial: string): void | Promise<unknown>;
}

export interface OnlineRevokeResult extends RevokeResult {
  /** Listeners that did not confirm within the wait (their caches catch up on their own timers). */
  lagging: string[];
}

/**
 * Revocation for a running server: the ledger first (the source of truth, committed before anything else), then
 * every cache that answers from it (OCSP responses, the CRL), waiting a bounded time for them to serve the change.
 * A revocation whose caches lag is still a revocation: the ledger has it, and the caller hears which ones lag.
 */
export class Revoker {
  readonly #logger: Logger;
  readonly #waitMs: number;

  constructor(
    readonly ca: CertificateAuthority,
    readonly ledger: Ledger,
    readonly listeners: RevocationListener[] = [],
    options: { logger?: Logger; waitMs?: number } = {},
  ) {
    this.#logger = options.logger ?? silentLogger;
    this.#waitMs = options.waitMs ?? 1_000;
  }

  /** Revoking twice is harmless (see Ledger.revoke); the caches are told either way, as the reason may have changed. */
  async revoke(serial: string, reason: RevocationReason = 'unspecified', invalidityDate?: Date): Promise<OnlineRevokeResult> {
    const result = await revokeCertificate(this.ca, this.ledger, serial, reason, invalidityDate);
    const s = result.entry.serial;
    const lagging: string[] = [];
    await Promise.all(
      this.listeners.map(async (l) => {
        let timer: NodeJS.Timeout | undefined;
        const failed = (err: unknown): false => {
          this.#logger.error({ serial: s, listener: l.name, error: describeError(err) }, 'revocation recorded, but a cache could not be refreshed');
          return false;
        };
        try {
          const done = l.invalidate(s);
          if (!done) return;
          // The failure handler is attached at once: a refresh that fails after the wait must not go unhandled.
          const ok = await Promise.race([
            Promise.resolve(done).then(() => true, failed),
            new Promise<boolean>((resolve) => {
              timer = setTimeout(() => resolve(false), this.#waitMs);
            }),
          ]);
          if (!ok) lagging.push(l.name);
        } catch (err) {
          lagging.push(l.name);
          failed(err);
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    this.#logger.info(
      { serial: s, reason: result.entry.revocationReason, alreadyRevoked: result.alreadyRevoked, ...(lagging.length ? { lagging } : {}) },
      'certificate revoked',
    );
    return { ...result, lagging };
  }
}
