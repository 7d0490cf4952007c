import { OcspResponse, verifyOcspResponse, type Certificate } from '../pki/index.js';
import { stapleKey, type StapleCache, type StapleRecord } from './staple-cache.js';
import type { EffectivePolicy } from './stapling-policy.js';

/** A certificate of a secret that may want a fetched staple: what the SecretSource tells its supplier. */
export interface StapleTarget {
  secret: string;
  leaf: Certificate;
  issuer: Certificate | null;
  policy: EffectivePolicy;
  /** The secret carries a staple of its own (tls.ocsp / tls.ocsp-staple). */
  userStaple: boolean;
}

/** A staple fetched from the certificate's responder. */
export interface SuppliedStaple {
  der: Buffer;
  url: string;
  fetchedAt: Date;
}

/**
 * Where a SecretSource gets fetched staples: the StapleRefresher when serving, the on-disk cache for the offline
 * `secret check`. The source tells it, after every scan, which certificates its secrets hold (`track`), asks it
 * for the newest staple of a certificate, and re-judges the named secrets when it says a staple changed.
 */
export interface StapleSupplier {
  staple(leaf: Certificate, issuer: Certificate): SuppliedStaple | null;
  track(targets: readonly StapleTarget[]): void;
  onChange(listener: (secrets: readonly string[]) => void): () => void;
  /** The fetch state of a certificate, for reports; null when it was never fetched. */
  record?(leaf: Certificate, issuer: Certificate): StapleRecord | null;
}

/** The staples of an on-disk cache, read-only: what `meshcert secret check --data-dir` judges with. */
export function cachedStapleSupplier(cache: StapleCache): StapleSupplier {
  const memo = new Map<string, StapleRecord | null>();
  const record = (leaf: Certificate, issuer: Certificate): StapleRecord | null => {
    const key = stapleKey(leaf, issuer);
    if (!memo.has(key)) memo.set(key, cache.read(key));
    return memo.get(key)!;
  };
  return {
    staple(leaf, issuer) {
      const r = record(leaf, issuer);
      return r?.staple ? { der: r.staple.der, url: r.staple.url, fetchedAt: r.staple.fetchedAt } : null;
    },
    track() {},
    onChange() {
      return () => undefined;
    },
    record,
  };
}

/** How a staple stands at an instant, for choosing between two: revoked counts as a current answer. */
type Standing = { rank: number; thisUpdate: number; nextUpdate: number };

/**
 * Parsed staples by buffer: parsing (pkijs, and @peculiar/x509 for an embedded signer certificate) costs
 * milliseconds, and the same staple buffers are judged again at every re-evaluation.
 */
const parsed = new WeakMap<Buffer, OcspResponse | null>();

function parse(der: Buffer): OcspResponse | null {
  if (!parsed.has(der)) {
    let r: OcspResponse | null = null;
    try {
      r = OcspResponse.parse(der);
    } catch {
      r = null;
    }
    parsed.set(der, r);
  }
  return parsed.get(der)!;
}

function standing(der: Buffer | null, leaf: Certificate, issuer: Certificate, at: Date): Standing {
  if (!der || der.length === 0) return { rank: 0, thisUpdate: 0, nextUpdate: 0 };
  const resp = parse(der);
  if (!resp) return { rank: 1, thisUpdate: 0, nextUpdate: 0 };
  const res = verifyOcspResponse(resp, { cert: leaf, issuer, at, requireGood: false, maxClockSkewMs: 0, maxAgeWithoutNextUpdateMs: 0 });
  const times = { thisUpdate: res.thisUpdate?.getTime() ?? 0, nextUpdate: res.nextUpdate?.getTime() ?? 0 };
  if (res.ok) return { rank: res.status === 'unknown' ? 1 : 3, ...times };
  if (res.reasons.every((r) => r.code === 'freshness')) return { rank: 2, ...times };
  return { rank: 1, ...times };
}

/**
 * Which staple to serve for a certificate: the secret's own (`tls.ocsp`) or the fetched one. A current answer
 * (good, or revoked — the responder's newest word) beats an expired one, which beats a broken one, which beats
 * none; between two current answers the newer thisUpdate wins, between two expired ones the later nextUpdate, and
 * the fetched one on a tie. So a user-provided staple is used until a fresher valid one is fetched, a fetched
 * staple stays until its nextUpdate while the responder fails, and a `revoked` answer replaces a good one at once.
 */
export function chooseStaple(input: { leaf: Certificate; issuer: Certificate; user: Buffer | null; fetched: Buffer | null; at: Date }): 'user' | 'fetched' {
  const { leaf, issuer, at } = input;
  if (!input.fetched) return 'user';
  const f = standing(input.fetched, leaf, issuer, at);
  // A fetched staple was verified when it arrived; one that does not verify now (a tampered cache file, another
  // issuer) is never worse than none: ignore it.
  if (f.rank <= 1) return 'user';
  if (!input.user) return 'fetched';
  const u = standing(input.user, leaf, issuer, at);
  if (f.rank !== u.rank) return f.rank > u.rank ? 'fetched' : 'user';
  if (f.rank === 3) return f.thisUpdate >= u.thisUpdate ? 'fetched' : 'user';
  return f.nextUpdate >= u.nextUpdate ? 'fetched' : 'user';
}
