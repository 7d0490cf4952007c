import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** How one CreateCertificate call ended, for the issuance metrics. */
export type IssuanceResult = 'issued' | 'denied' | 'error';

/**
 * The control plane's Prometheus metrics, on a private Registry: several control planes in one process (tests)
 * never share or double-register a metric, and nothing of ours leaks into a library user's global registry.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly issuances: Counter<'result' | 'code'>;
  readonly issuanceSeconds: Histogram<'result' | 'code'>;
  readonly denials: Counter<'reason'>;
  readonly servingCertRenewals: Counter<'result'>;
  #caNotAfter: Date | null = null;
  #servingNotAfter: Date | null = null;

  constructor(options: { defaultMetrics?: boolean; now?: () => Date } = {}) {
    const now = options.now ?? (() => new Date());
    const secondsUntil = (d: Date | null): number | null => (d ? (d.getTime() - now().getTime()) / 1000 : null);
    this.issuances = new Counter({
      name: 'meshcert_ca_issuance_total',
      help: 'CreateCertificate calls by result (issued, denied, error) and gRPC status code',
      labelNames: ['result', 'code'],
      registers: [this.registry],
    });
    this.issuanceSeconds = new Histogram({
      name: 'meshcert_ca_issuance_duration_seconds',
      help: 'Time to answer a CreateCertificate call, by result and gRPC status code',
      labelNames: ['result', 'code'],
      // Issuance is a signature and a ledger commit: milliseconds normally, so the buckets start low.
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.denials = new Counter({
      name: 'meshcert_ca_denials_total',
      help: 'CreateCertificate calls refused, by reason (the error code, e.g. unauthenticated, csr_signature, rate_limited)',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.servingCertRenewals = new Counter({
      name: 'meshcert_grpc_serving_certificate_renewals_total',
      help: 'Renewals of the gRPC serving certificate, by result (ok, error)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    // Gauges read the clock at scrape time, so the value is current however rarely it is set.
    const self = this;
    new Gauge({
      name: 'meshcert_ca_expiry_seconds',
      help: 'Seconds until the signing CA (or a certificate above it) expires; negative once expired',
      registers: [this.registry],
      collect() {
        const s = secondsUntil(self.#caNotAfter);
        if (s !== null) this.set(s);
      },
    });
    new Gauge({
      name: 'meshcert_grpc_serving_certificate_expiry_seconds',
      help: 'Seconds until the gRPC serving certificate expires; negative once expired',
      registers: [this.registry],
      collect() {
        const s = secondsUntil(self.#servingNotAfter);
        if (s !== null) this.set(s);
      },
    });
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'meshcert_' });
  }

  setCaNotAfter(d: Date): void {
    this.#caNotAfter = d;
  }

  setServingNotAfter(d: Date): void {
    this.#servingNotAfter = d;
  }

  /** One call: counted, timed, and for a denial its reason. */
  observeIssuance(result: IssuanceResult, code: string, seconds: number, denialReason?: string): void {
    this.issuances.inc({ result, code });
    this.issuanceSeconds.observe({ result, code }, seconds);
    if (result === 'denied' && denialReason) this.denials.inc({ reason: denialReason });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
