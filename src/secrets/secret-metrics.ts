import { Gauge, type Registry } from 'prom-client';
import type { SecretSource } from './secret-source.js';
import type { StapleState } from './stapling-policy.js';

const STATES: StapleState[] = ['none', 'expired', 'broken', 'valid'];

/**
 * Prometheus gauges over a SecretSource, read at scrape time (so they are never stale and need no bookkeeping):
 * which secrets are served, which have a refused newer version, the state of each staple, and seconds until each
 * staple's nextUpdate. Registered on the caller's registry (the control plane's), never the global one.
 */
export function registerSecretMetrics(registry: Registry, source: SecretSource, now: () => Date = () => new Date()): void {
  new Gauge({
    name: 'meshcert_secret_served',
    help: 'Gateway secrets with a version in force (1), or known but never valid (0)',
    labelNames: ['secret'],
    registers: [registry],
    collect() {
      this.reset();
      for (const e of source.entries()) this.set({ secret: e.name }, e.served ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meshcert_secret_invalid',
    help: 'Gateway secrets whose newest version was refused (1); the last good version stays served',
    labelNames: ['secret'],
    registers: [registry],
    collect() {
      this.reset();
      for (const e of source.entries()) this.set({ secret: e.name }, e.rejected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meshcert_secret_staple_state',
    help: 'State of the OCSP staple of the version in force (none, expired, broken, valid): 1 for the current state',
    labelNames: ['secret', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const e of source.entries()) {
        const st = e.served?.evaluation.staple?.state;
        if (!st) continue;
        for (const s of STATES) this.set({ secret: e.name, state: s }, s === st ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'meshcert_secret_sds_withheld',
    help: 'Secrets whose certificate is withheld from Envoy by the stapling policy (1)',
    labelNames: ['secret'],
    registers: [registry],
    collect() {
      this.reset();
      for (const e of source.entries()) {
        const action = e.served?.evaluation.decision?.sds.action;
        if (action) this.set({ secret: e.name }, action === 'withhold' ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'meshcert_secret_staple_age_seconds',
    help: "Seconds since the served staple's thisUpdate (fetched or from the secret)",
    labelNames: ['secret', 'origin'],
    registers: [registry],
    collect() {
      this.reset();
      const t = now().getTime();
      for (const e of source.entries()) {
        const st = e.served?.evaluation.staple;
        if (st?.thisUpdate && st.state !== 'none') {
          this.set({ secret: e.name, origin: e.served!.secret.tls?.fetchedStaple ? 'fetched' : 'secret' }, (t - st.thisUpdate.getTime()) / 1000);
        }
      }
    },
  });
  new Gauge({
    name: 'meshcert_secret_staple_expiry_seconds',
    help: "Seconds until the served staple's nextUpdate; negative once expired",
    labelNames: ['secret'],
    registers: [registry],
    collect() {
      this.reset();
      const t = now().getTime();
      for (const e of source.entries()) {
        const next = e.served?.evaluation.staple?.nextUpdate;
        if (next) this.set({ secret: e.name }, (next.getTime() - t) / 1000);
      }
    },
  });
}
