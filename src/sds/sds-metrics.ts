import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * The SDS server's Prometheus metrics on the caller's registry (the control plane's): streams open, responses
 * pushed, ACKs and NACKs, calls denied, and the resources subscribed to that are withheld right now.
 */
export class SdsMetrics {
  readonly responses: Counter<'kind'>;
  readonly acks: Counter;
  readonly nacks: Counter<'resource'>;
  readonly denied: Counter<'reason'>;
  #streams: () => number = () => 0;
  #withheld: () => string[] = () => [];

  constructor(registry: Registry) {
    this.responses = new Counter({
      name: 'meshcert_sds_responses_total',
      help: 'DiscoveryResponses sent, by kind (initial: first answer on a stream or to a new subscription; push: after a change; fetch: FetchSecrets)',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.acks = new Counter({ name: 'meshcert_sds_acks_total', help: 'Responses the SDS clients accepted (ACK)', registers: [registry] });
    this.nacks = new Counter({
      name: 'meshcert_sds_nacks_total',
      help: 'Responses the SDS clients rejected (NACK), by resource name; the rejected version is not sent again',
      labelNames: ['resource'],
      registers: [registry],
    });
    this.denied = new Counter({
      name: 'meshcert_sds_denied_total',
      help: 'SDS calls refused, by reason (unauthenticated, permission_denied, invalid_argument)',
      labelNames: ['reason'],
      registers: [registry],
    });
    const self = this;
    new Gauge({
      name: 'meshcert_sds_streams',
      help: 'StreamSecrets streams open',
      registers: [registry],
      collect() {
        this.set(self.#streams());
      },
    });
    new Gauge({
      name: 'meshcert_sds_withheld_resources',
      help: 'Subscribed resources not sent because the stapling policy withholds them or they have no valid version (1)',
      labelNames: ['resource'],
      registers: [registry],
      collect() {
        this.reset();
        for (const r of self.#withheld()) this.set({ resource: r }, 1);
      },
    });
  }

  /** Wired by the service: how to count streams and list withheld resources at scrape time. */
  observe(streams: () => number, withheld: () => string[]): void {
    this.#streams = streams;
    this.#withheld = withheld;
  }
}
