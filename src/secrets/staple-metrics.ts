import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { StapleFetchResult } from './staple-fetcher.js';
import type { StapleFetchObserver, StapleFetchState } from './staple-refresher.js';

/**
 * Prometheus metrics of staple fetching, on the caller's registry (the control plane's), in the style of
 * secret-metrics.ts: counters of fetches by result and of failures by reason (counted per secret served by the
 * certificate), a latency histogram, and gauges read from the refresher at scrape time — age of the fetched
 * staple, seconds to its nextUpdate, seconds to the next fetch, consecutive failures, revoked.
 */
export class StapleMetrics implements StapleFetchObserver {
  readonly fetches: Counter<'secret' | 'result'>;
  readonly failures: Counter<'secret' | 'reason'>;
  readonly duration: Histogram<'outcome'>;

  /** `states` is read at scrape time (e.g. `() => refresher.states()`; the refresher may be made after the metrics). */
  constructor(registry: Registry, states: (() => StapleFetchState[]) | null = null, now: () => Date = () => new Date()) {
    this.fetches = new Counter({
      name: 'meshcert_staple_fetches_total',
      help: 'OCSP staple fetches by result: good, revoked, or the failure reason',
      labelNames: ['secret', 'result'],
      registers: [registry],
    });
    this.failures = new Counter({
      name: 'meshcert_staple_fetch_failures_total',
      help: 'Failed OCSP staple fetches by reason (unreachable, timeout, http-status, too-large, garbage, responder-error, wrong-signer, wrong-certificate, unknown-status, stale, nonce)',
      labelNames: ['secret', 'reason'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'meshcert_staple_fetch_duration_seconds',
      help: 'Time to fetch an OCSP staple, from request to verified answer',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    if (!states) return;
    const perSecret = (g: Gauge<'secret'>, value: (s: StapleFetchState, t: number) => number | null) => {
      g.reset();
      const t = now().getTime();
      for (const s of states()) {
        const v = value(s, t);
        if (v !== null) for (const secret of s.secrets) g.set({ secret }, v);
      }
    };
    new Gauge({
      name: 'meshcert_staple_age_seconds',
      help: "Seconds since the fetched staple's thisUpdate",
      labelNames: ['secret'],
      registers: [registry],
      collect() {
        perSecret(this, (s, t) => (s.staple ? (t - s.staple.thisUpdate.getTime()) / 1000 : null));
      },
    });
    new Gauge({
      name: 'meshcert_staple_next_update_seconds',
      help: "Seconds until the fetched staple's nextUpdate; negative once expired",
      labelNames: ['secret'],
      registers: [registry],
      collect() {
        perSecret(this, (s, t) => (s.staple?.nextUpdate ? (s.staple.nextUpdate.getTime() - t) / 1000 : null));
      },
    });
    new Gauge({
      name: 'meshcert_staple_next_fetch_seconds',
      help: 'Seconds until the next fetch of the staple (refresh or retry)',
      labelNames: ['secret'],
      registers: [registry],
      collect() {
        perSecret(this, (s, t) => (s.nextAttemptAt.getTime() - t) / 1000);
      },
    });
    new Gauge({
      name: 'meshcert_staple_fetch_consecutive_failures',
      help: 'Failed fetches since the last good or revoked answer',
      labelNames: ['secret'],
      registers: [registry],
      collect() {
        perSecret(this, (s) => s.consecutiveFailures);
      },
    });
    new Gauge({
      name: 'meshcert_staple_revoked',
      help: 'The responder says the certificate is revoked (1)',
      labelNames: ['secret'],
      registers: [registry],
      collect() {
        perSecret(this, (s) => (s.staple ? (s.staple.status === 'revoked' ? 1 : 0) : null));
      },
    });
  }

  fetched(secrets: readonly string[], result: StapleFetchResult): void {
    const label = result.ok ? result.status : result.reason;
    for (const secret of secrets) {
      this.fetches.inc({ secret, result: label });
      if (!result.ok) this.failures.inc({ secret, reason: result.reason });
    }
    this.duration.observe({ outcome: result.ok ? 'ok' : 'failure' }, result.latencyMs / 1000);
  }
}
