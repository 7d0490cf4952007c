import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * Per-request metrics of the HTTP proxy, on a registry the gateway passes in (its admin /metrics). Label children
 * are cached so that the hot path does no label hashing.
 */
export class HttpProxyMetrics {
  readonly #requests: Counter<'code' | 'protocol'>;
  readonly #duration: Histogram;
  readonly #local: Counter<'reason'>;
  readonly #active: Gauge;
  readonly #rejected: Counter;
  readonly #retries: Counter<'reason'>;
  readonly #reqChildren = new Map<string, { inc(): void }>();
  readonly #localChildren = new Map<string, { inc(): void }>();

  constructor(registry: Registry) {
    this.#requests = new Counter({
      name: 'meshcert_gateway_http_requests_total',
      help: 'HTTP requests answered by the gateway, by status code and downstream protocol',
      labelNames: ['code', 'protocol'],
      registers: [registry],
    });
    this.#duration = new Histogram({
      name: 'meshcert_gateway_http_request_duration_seconds',
      help: 'Time from request headers to the end of the response',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.#local = new Counter({
      name: 'meshcert_gateway_http_local_replies_total',
      help: 'Requests the gateway answered itself (no route, upstream failures, admission denied), by reason',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.#active = new Gauge({
      name: 'meshcert_gateway_http_downstream_connections',
      help: 'Open downstream connections handed to the HTTP proxy',
      registers: [registry],
    });
    this.#retries = new Counter({
      name: 'meshcert_gateway_http_upstream_retries_total',
      help: 'Upstream tries made again under a VirtualService retries policy, by what the try before met (a ProxyErrorReason, or the response status)',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.#rejected = new Counter({
      name: 'meshcert_gateway_http_downstream_connections_rejected_total',
      help: 'Downstream connections closed at once because limits.maxConnections was reached',
      registers: [registry],
    });
  }

  request(code: number, protocol: string, seconds: number): void {
    const k = `${code}|${protocol}`;
    let c = this.#reqChildren.get(k);
    if (!c) {
      c = this.#requests.labels(String(code), protocol);
      this.#reqChildren.set(k, c);
    }
    c.inc();
    this.#duration.observe(seconds);
  }

  retry(reason: string): void {
    this.#retries.inc({ reason });
  }

  localReply(reason: string): void {
    let c = this.#localChildren.get(reason);
    if (!c) {
      c = this.#local.labels(reason);
      this.#localChildren.set(reason, c);
    }
    c.inc();
  }

  connectionOpened(): void {
    this.#active.inc();
  }

  connectionClosed(): void {
    this.#active.dec();
  }

  connectionRejected(): void {
    this.#rejected.inc();
  }
}
