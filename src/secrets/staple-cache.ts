import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/index.js';
import type { Certificate } from '../pki/index.js';

/** The folder of fetched staples in a data dir. */
export const STAPLE_CACHE_DIR = 'ocsp-staples';

export function stapleCacheDir(dataDir: string): string {
  return join(dataDir, STAPLE_CACHE_DIR);
}

/** What the last fetch said, kept for `meshcert secret check`, metrics and restarts. */
export interface StapleAttempt {
  at: Date;
  /** good, revoked, or a failure reason (STAPLE_FETCH_FAILURES). */
  result: string;
  url: string;
  message: string | null;
  latencyMs: number;
}

export interface CachedStaple {
  der: Buffer;
  url: string;
  fetchedAt: Date;
  status: 'good' | 'revoked';
  thisUpdate: Date;
  nextUpdate: Date | null;
}

/** One certificate's fetch state: its newest usable staple and the schedule. */
export interface StapleRecord {
  certificate: { serial: string; subject: string; issuer: string };
  /** The secrets that served this certificate when it was last fetched. */
  secrets: string[];
  staple: CachedStaple | null;
  lastAttempt: StapleAttempt | null;
  lastSuccessAt: Date | null;
  consecutiveFailures: number;
  nextAttemptAt: Date | null;
}

/** The cache key of a certificate: its DER and its issuer's, hashed (the same certificate in two secrets is fetched once). */
export function stapleKey(leaf: Certificate, issuer: Certificate): string {
  return createHash('sha256').update(leaf.der).update(issuer.der).digest('hex').slice(0, 40);
}

const date = (v: unknown): Date | null => {
  if (typeof v !== 'string') return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
};
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

function decode(json: unknown): StapleRecord | null {
  if (!json || typeof json !== 'object') return null;
  const o = json as Record<string, unknown>;
  if (o.version !== 1) return null;
  const c = (o.certificate ?? {}) as Record<string, unknown>;
  const s = o.staple as Record<string, unknown> | null | undefined;
  const a = o.lastAttempt as Record<string, unknown> | null | undefined;
  let staple: CachedStaple | null = null;
  if (s && typeof s === 'object') {
    const thisUpdate = date(s.thisUpdate);
    const fetchedAt = date(s.fetchedAt);
    const status = s.status === 'good' || s.status === 'revoked' ? s.status : null;
    if (typeof s.der === 'string' && thisUpdate && fetchedAt && status) {
      staple = { der: Buffer.from(s.der, 'base64'), url: str(s.url) ?? '', fetchedAt, status, thisUpdate, nextUpdate: date(s.nextUpdate) };
    }
  }
  const attemptAt = a && typeof a === 'object' ? date(a.at) : null;
  return {
    certificate: { serial: str(c.serial) ?? '', subject: str(c.subject) ?? '', issuer: str(c.issuer) ?? '' },
    secrets: Array.isArray(o.secrets) ? o.secrets.filter((x): x is string => typeof x === 'string') : [],
    staple,
    lastAttempt:
      a && attemptAt
        ? { at: attemptAt, result: str(a.result) ?? 'unknown', url: str(a.url) ?? '', message: str(a.message), latencyMs: typeof a.latencyMs === 'number' ? a.latencyMs : 0 }
        : null,
    lastSuccessAt: date(o.lastSuccessAt),
    consecutiveFailures: typeof o.consecutiveFailures === 'number' && o.consecutiveFailures >= 0 ? Math.floor(o.consecutiveFailures) : 0,
    nextAttemptAt: date(o.nextAttemptAt),
  };
}

function encode(r: StapleRecord): string {
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  return `${JSON.stringify(
    {
      version: 1,
      certificate: r.certificate,
      secrets: r.secrets,
      staple: r.staple
        ? {
            status: r.staple.status,
            thisUpdate: iso(r.staple.thisUpdate),
            nextUpdate: iso(r.staple.nextUpdate),
            fetchedAt: iso(r.staple.fetchedAt),
            url: r.staple.url,
            der: r.staple.der.toString('base64'),
          }
        : null,
      lastAttempt: r.lastAttempt ? { ...r.lastAttempt, at: iso(r.lastAttempt.at), latencyMs: Math.round(r.lastAttempt.latencyMs * 10) / 10 } : null,
      lastSuccessAt: iso(r.lastSuccessAt),
      consecutiveFailures: r.consecutiveFailures,
      nextAttemptAt: iso(r.nextAttemptAt),
    },
    null,
    2,
  )}\n`;
}

/**
 * Fetched staples on disk, one JSON file per certificate in DATA-DIR/ocsp-staples, replaced atomically, so that a
 * restart serves a staple that is still valid without asking the responder, keeps its backoff when the responder
 * was failing, and `meshcert secret check` can show the fetch state offline. Staples are public data (what any
 * TLS client receives), so the files are 0644. What is read back is never trusted: the staple is verified again
 * against the certificate's issuer before it is served. An unreadable or foreign file reads as no record.
 */
export class StapleCache {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  static forDataDir(dataDir: string): StapleCache {
    return new StapleCache(stapleCacheDir(dataDir));
  }

  #file(key: string): string {
    return join(this.dir, `${key}.json`);
  }

  read(key: string): StapleRecord | null {
    let text: string;
    try {
      text = readFileSync(this.#file(key), 'utf8');
    } catch {
      return null;
    }
    try {
      return decode(JSON.parse(text));
    } catch {
      return null;
    }
  }

  /** Throws a MeshError (FILE_WRITE) naming the file when it cannot be written. */
  write(key: string, record: StapleRecord): void {
    writeFileAtomic(this.#file(key), encode(record), { mode: 0o644 });
  }

  /**
   * Removes the records of certificates no longer served (not in `keep`) whose last news (staple nextUpdate, last
   * attempt) is older than `before`: rotated certificates would otherwise pile up. Unreadable files are left alone.
   * Returns how many were removed.
   */
  prune(keep: ReadonlySet<string>, before: Date): number {
    let removed = 0;
    for (const [key, r] of this.list()) {
      if (keep.has(key)) continue;
      const last = Math.max(r.staple?.nextUpdate?.getTime() ?? 0, r.staple?.fetchedAt.getTime() ?? 0, r.lastAttempt?.at.getTime() ?? 0);
      if (last >= before.getTime()) continue;
      try {
        unlinkSync(this.#file(key));
        removed++;
      } catch {
        /* gone already, or not ours to remove */
      }
    }
    return removed;
  }

  /** Every readable record, by key. */
  list(): Map<string, StapleRecord> {
    const out = new Map<string, StapleRecord>();
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return out;
    }
    for (const n of names) {
      if (!n.endsWith('.json') || n.startsWith('.')) continue;
      const key = n.slice(0, -'.json'.length);
      const r = this.read(key);
      if (r) out.set(key, r);
    }
    return out;
  }
}
