import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** How one CreateCertificate call ended, for the issuance metrics. */
export type IssuanceResult = 'issued' | 'denied' | 'error';

/** What the CRL gauges report, set on each publication. */
export interface CrlInfo {
  bytes: number;
  entries: number;
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
}

/**
 * The control plane's Prometheus metrics, on a private Registry: several control planes in one process (tests)
 * never share or double-register a metric, and nothing of ours leaks into a library user's global registry.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly issuances: Counter<'result' | 'code'>;
  readonly issuanceSeconds: Histogram<'result' | 'code'>;
  readonly denials: Counter<'reason'>;
  readonly shedCalls: Counter<'reason'>;
  readonly servingCertRenewals: Counter<'result'>;
  readonly ocspRequests: Counter<'method' | 'status'>;
  readonly ocspMalformed: Counter<'reason'>;
  readonly ocspCache: Counter<'result'>;
  readonly ocspSignSeconds: Histogram<'status'>;
  readonly ocspSignerRenewals: Counter<'trust_domain' | 'result'>;
  readonly crlRequests: Counter<'format' | 'code'>;
  readonly crlGenerations: Counter<'trust_domain' | 'result'>;
  readonly adminRequests: Counter<'route' | 'code'>;
  readonly adminAuthFailures: Counter<'reason'>;
  readonly revocations: Counter<'result'>;
  // Per trust domain (one signing CA each, with its own OCSP signer and CRL), in the order they were set.
  readonly #caNotAfter = new Map<string, Date>();
  #servingNotAfter: Date | null = null;
  readonly #ocspSignerNotAfter = new Map<string, Date>();
  readonly #crl = new Map<string, CrlInfo>();

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
    this.shedCalls = new Counter({
      name: 'meshcert_ca_shed_total',
      help: 'CreateCertificate calls answered at once without being served: overloaded (grpc.maxInFlight), deadline (too near or past when their turn came), cancelled',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.servingCertRenewals = new Counter({
      name: 'meshcert_grpc_serving_certificate_renewals_total',
      help: 'Renewals of the gRPC serving certificate, by result (ok, error)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.ocspRequests = new Counter({
      name: 'meshcert_ocsp_requests_total',
      help: 'OCSP requests by HTTP method (GET, POST) and answer (good, revoked, unknown, malformedRequest, unauthorized, internalError, tryLater)',
      labelNames: ['method', 'status'],
      registers: [this.registry],
    });
    this.ocspMalformed = new Counter({
      name: 'meshcert_ocsp_malformed_requests_total',
      help: 'OCSP requests answered malformedRequest, by reason (der, base64, too_large)',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.ocspCache = new Counter({
      name: 'meshcert_ocsp_cache_lookups_total',
      help: 'OCSP answers served from the pre-signed cache (hit) or signed on demand (miss)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.ocspSignSeconds = new Histogram({
      name: 'meshcert_ocsp_signing_duration_seconds',
      help: 'Time to make one signed OCSP response (ledger read and signature), by certificate status',
      labelNames: ['status'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      registers: [this.registry],
    });
    this.ocspSignerRenewals = new Counter({
      name: 'meshcert_ocsp_signer_renewals_total',
      help: 'Renewals of the delegated OCSP signer certificate, by trust domain (each CA has its own signer) and result (ok, error)',
      labelNames: ['trust_domain', 'result'],
      registers: [this.registry],
    });
    this.crlRequests = new Counter({
      name: 'meshcert_crl_requests_total',
      help: 'GET /crl requests by format (der, pem) and HTTP status code',
      labelNames: ['format', 'code'],
      registers: [this.registry],
    });
    this.crlGenerations = new Counter({
      name: 'meshcert_crl_generations_total',
      help: 'CRLs made (on revocation and before nextUpdate), by trust domain (each CA has its own CRL) and result (ok, error)',
      labelNames: ['trust_domain', 'result'],
      registers: [this.registry],
    });
    this.adminRequests = new Counter({
      name: 'meshcert_admin_requests_total',
      help: 'Admin API requests by route and HTTP status code',
      labelNames: ['route', 'code'],
      registers: [this.registry],
    });
    this.adminAuthFailures = new Counter({
      name: 'meshcert_admin_auth_failures_total',
      help: 'Admin API requests refused for their credential, by reason (missing, wrong, token_file)',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.revocations = new Counter({
      name: 'meshcert_revocations_total',
      help: 'Revocations through the admin API, by result (revoked, already_revoked, not_found, invalid: an unknown or ambiguous trust domain, error)',
      labelNames: ['result'],
      registers: [this.registry],
    });
    // Gauges read the clock at scrape time, so the value is current however rarely it is set. Per-CA gauges carry
    // the trust domain of the CA (the main one and each of additionalTrustDomains).
    const self = this;
    const perDomain = <T>(values: Map<string, T>, value: (v: T) => number | null) =>
      function collect(this: Gauge<'trust_domain'>): void {
        this.reset();
        for (const [trustDomain, v] of values) {
          const n = value(v);
          if (n !== null) this.set({ trust_domain: trustDomain }, n);
        }
      };
    new Gauge({
      name: 'meshcert_ca_expiry_seconds',
      help: 'Seconds until the signing CA of a trust domain (or a certificate above it) expires; negative once expired',
      labelNames: ['trust_domain'],
      registers: [this.registry],
      collect: perDomain(this.#caNotAfter, (d) => secondsUntil(d)),
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
    new Gauge({
      name: 'meshcert_ocsp_signer_expiry_seconds',
      help: 'Seconds until the delegated OCSP signer certificate of a trust domain\'s CA expires; negative once expired',
      labelNames: ['trust_domain'],
      registers: [this.registry],
      collect: perDomain(this.#ocspSignerNotAfter, (d) => secondsUntil(d)),
    });
    new Gauge({
      name: 'meshcert_crl_size_bytes',
      help: 'Size of the CRL of a trust domain\'s CA (DER), served at /crl (the main one) or /crl/TRUST-DOMAIN',
      labelNames: ['trust_domain'],
      registers: [this.registry],
      collect: perDomain(this.#crl, (c) => c.bytes),
    });
    new Gauge({
      name: 'meshcert_crl_entries',
      help: 'Revoked certificates listed in the CRL of a trust domain\'s CA',
      labelNames: ['trust_domain'],
      registers: [this.registry],
      collect: perDomain(this.#crl, (c) => c.entries),
    });
    new Gauge({
      name: 'meshcert_crl_number',
      help: 'CRL number of the CRL of a trust domain\'s CA',
      labelNames: ['trust_domain'],
      registers: [this.registry],
      collect: perDomain(this.#crl, (c) => Number(c.crlNumber)),
    });
    new Gauge({
      name: 'meshcert_crl_age_seconds',
      help: 'Seconds since the thisUpdate of the CRL of a trust domain\'s CA',
      labelNames: ['trust_domain'],
      registers: [this.registry],
      collect: perDomain(this.#crl, (c) => {
        const s = secondsUntil(c.thisUpdate);
        return s === null ? null : -s;
      }),
    });
    new Gauge({
      name: 'meshcert_crl_next_update_seconds',
      help: 'Seconds until the nextUpdate of the CRL of a trust domain\'s CA; negative once it has passed',
      labelNames: ['trust_domain'],
      registers: [this.registry],
      collect: perDomain(this.#crl, (c) => secondsUntil(c.nextUpdate)),
    });
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'meshcert_' });
  }

  setCaNotAfter(trustDomain: string, d: Date): void {
    this.#caNotAfter.set(trustDomain, d);
  }

  setServingNotAfter(d: Date): void {
    this.#servingNotAfter = d;
  }

  setOcspSignerNotAfter(trustDomain: string, d: Date): void {
    this.#ocspSignerNotAfter.set(trustDomain, d);
  }

  setCrl(trustDomain: string, info: CrlInfo): void {
    this.#crl.set(trustDomain, info);
  }

  /** A call shed by the gRPC service before any work. */
  shed(reason: string): void {
    this.shedCalls.inc({ reason });
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
