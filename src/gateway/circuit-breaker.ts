import type { UpstreamPlan } from './upstream-pool.js';

/**
 * Envoy's circuit breakers for one destination (DestinationRule connectionPool.http), as Istio configures them:
 * requests in flight (http2MaxRequests, every protocol), requests waiting for an HTTP/1.1 connection when
 * tcp.maxConnections are all busy (http1MaxPendingRequests), and retries in flight (maxRetries). Counters live
 * per plan, so a reload that changes the limits starts afresh while the requests of the old plan finish on theirs.
 */
export class CircuitBreaker {
  active = 0;
  retrying = 0;

  constructor(readonly limits: { maxRequests: number | undefined; maxPending: number | undefined; maxRetries: number | undefined }) {}

  /** True when one more request would go over http2MaxRequests. */
  get requestsFull(): boolean {
    return this.limits.maxRequests !== undefined && this.active >= this.limits.maxRequests;
  }

  /** True when another retry would go over maxRetries. */
  get retriesFull(): boolean {
    return this.limits.maxRetries !== undefined && this.retrying >= this.limits.maxRetries;
  }

  /** True when a request would wait for a connection beyond http1MaxPendingRequests (busy = connections at the cap). */
  pendingFull(queued: number, connectionsAtCap: boolean): boolean {
    return this.limits.maxPending !== undefined && connectionsAtCap && queued >= this.limits.maxPending;
  }
}

const breakers = new WeakMap<UpstreamPlan, CircuitBreaker | null>();

/** The breaker of a destination, or null when its DestinationRule sets no limit (then nothing is counted). */
export function circuitBreakerOf(plan: UpstreamPlan): CircuitBreaker | null {
  let b = breakers.get(plan);
  if (b === undefined) {
    const { maxRequests, maxPendingRequests: maxPending, maxRetries } = plan;
    b = maxRequests === undefined && maxPending === undefined && maxRetries === undefined ? null : new CircuitBreaker({ maxRequests, maxPending, maxRetries });
    breakers.set(plan, b);
  }
  return b;
}
