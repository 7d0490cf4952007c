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
  readonly servingCertRenewals: Counter<'result'>;
  readonly ocspRequests: Counter<'method' | 'status'>;
  readonly ocspMalformed: Counter<'reason'>;
  readonly ocspCache: Counter<'result'>;
  readonly ocspSignSeconds: Histogram<'status'>;
  readonly ocspSignerRenewals: Counter<'result'>;
  readonly crlRequests: Counter<'format' | 'code'>;
  readonly crlGenerations: Counter<'result'>;
  readonly adminRequests: Counter<'route' | 'code'>;
  readonly adminAuthFailures: Counter<'reason'>;
  readonly revocations: Counter<'result'>;
  #caNotAfter: Date | null = null;
  #servingNotAfter: Date | null = null;
  #ocspSignerNotAfter: Date | null = null;
  #crl: CrlInfo | null = null;

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
      help: 'Renewals of the delegated OCSP signer certificate, by result (ok, error)',
      labelNames: ['result'],
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
      help: 'CRLs made (on revocation and before nextUpdate), by result (ok, error)',
      labelNames: ['result'],
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
      help: 'Revocations through the admin API, by result (revoked, already_revoked, not_found, error)',
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
    new Gauge({
      name: 'meshcert_ocsp_signer_expiry_seconds',
      help: 'Seconds until the delegated OCSP signer certificate expires; negative once expired',
      registers: [this.registry],
      collect() {
        const s = secondsUntil(self.#ocspSignerNotAfter);
        if (s !== null) this.set(s);
      },
    });
    new Gauge({
      name: 'meshcert_crl_size_bytes',
      help: 'Size of the CRL served at /crl (DER)',
      registers: [this.registry],
      collect() {
        if (self.#crl) this.set(self.#crl.bytes);
      },
    });
    new Gauge({
      name: 'meshcert_crl_entries',
      help: 'Revoked certificates listed in the CRL served at /crl',
      registers: [this.registry],
      collect() {
        if (self.#crl) this.set(self.#crl.entries);
      },
    });
    new Gauge({
      name: 'meshcert_crl_number',
      help: 'CRL number of the CRL served at /crl',
      registers: [this.registry],
      collect() {
        if (self.#crl) this.set(Number(self.#crl.crlNumber));
      },
    });
    new Gauge({
      name: 'meshcert_crl_age_seconds',
      help: 'Seconds since the thisUpdate of the CRL served at /crl',
      registers: [this.registry],
      collect() {
        const s = secondsUntil(self.#crl?.thisUpdate ?? null);
        if (s !== null) this.set(-s);
      },
    });
    new Gauge({
      name: 'meshcert_crl_next_update_seconds',
      help: 'Seconds until the nextUpdate of the CRL served at /crl; negative once it has passed',
      registers: [this.registry],
      collect() {
        const s = secondsUntil(self.#crl?.nextUpdate ?? null);
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

  setOcspSignerNotAfter(d: Date): void {
    this.#ocspSignerNotAfter = d;
  }

  setCrl(info: CrlInfo): void {
    this.#crl = info;
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
