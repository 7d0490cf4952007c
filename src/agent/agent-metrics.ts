import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** How one attempt to get a certificate ended. */
export type RenewalResult = 'success' | 'ca_error' | 'rejected' | 'credential_error' | 'output_error';

/** The agent's Prometheus metrics, on a private Registry (several agents in one process never collide). */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly renewals: Counter<'result'>;
  readonly renewalSeconds: Histogram<'result'>;
  readonly expiry: Gauge;
  readonly nextRenewal: Gauge;
  readonly valid: Gauge;
  readonly lastError: Gauge<'code'>;
  readonly consecutiveFailures: Gauge;
  readonly trustBundleRoots: Gauge;
  readonly trustBundleUpdates: Counter;
  readonly expirations: Counter;
  readonly onRotateRuns: Counter<'result'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const r = [this.registry];
    this.renewals = new Counter({ name: 'meshcert_agent_renewals_total', help: 'Attempts to get a certificate, by result (success, ca_error, rejected, credential_error, output_error)', labelNames: ['result'], registers: r });
    this.renewalSeconds = new Histogram({
      name: 'meshcert_agent_renewal_duration_seconds',
      help: 'Time of one attempt: key, CSR, CA call, checks, files and SDS push',
      labelNames: ['result'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    });
    this.expiry = new Gauge({ name: 'meshcert_agent_certificate_expiry_timestamp_seconds', help: 'notAfter of the certificate held (Unix time); absent before the first', registers: r });
    this.nextRenewal = new Gauge({ name: 'meshcert_agent_next_renewal_timestamp_seconds', help: 'When the next attempt is due (Unix time)', registers: r });
    this.valid = new Gauge({ name: 'meshcert_agent_certificate_valid', help: '1 while the agent holds a valid certificate (and serves it), else 0', registers: r });
    this.lastError = new Gauge({ name: 'meshcert_agent_last_error_timestamp_seconds', help: 'When the last failed attempt happened (Unix time), labelled with its error code', labelNames: ['code'], registers: r });
    this.consecutiveFailures = new Gauge({ name: 'meshcert_agent_consecutive_failures', help: 'Failed attempts since the last success', registers: r });
    this.trustBundleRoots = new Gauge({ name: 'meshcert_agent_trust_bundle_roots', help: 'Roots in the trust bundle served (ROOTCA, root-cert.pem)', registers: r });
    this.trustBundleUpdates = new Counter({ name: 'meshcert_agent_trust_bundle_updates_total', help: 'Changes of the trust bundle served, from the CA or from --ca-root', registers: r });
    this.expirations = new Counter({ name: 'meshcert_agent_certificate_expirations_total', help: 'Times a certificate expired before a new one arrived (then it is no longer served)', registers: r });
    this.onRotateRuns = new Counter({ name: 'meshcert_agent_on_rotate_runs_total', help: 'Runs of the --on-rotate command, by result (ok, failed)', labelNames: ['result'], registers: r });
    this.valid.set(0);
    this.consecutiveFailures.set(0);
    for (const result of ['success', 'ca_error', 'rejected', 'credential_error', 'output_error'] as const) this.renewals.inc({ result }, 0);
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'meshcert_agent_' });
  }

  /** Records the error of a failed attempt as the only `last_error` series. */
  recordError(code: string, at: Date, consecutive: number): void {
    this.lastError.reset();
    this.lastError.set({ code }, at.getTime() / 1000);
    this.consecutiveFailures.set(consecutive);
  }
}
