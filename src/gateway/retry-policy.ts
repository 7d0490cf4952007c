import { DEFAULT_RETRY_ON, parseRetryOn } from '../config/index.js';
import { ProxyErrorReason, type UpstreamError } from './upstream-error.js';

/** VirtualService `http[].retries` as validated (Istio's HTTPRetry). */
export interface HttpRetries {
  attempts: number;
  perTryTimeout?: number | undefined;
  retryOn?: string | undefined;
  retryRemoteLocalities?: boolean | undefined;
}

/** Envoy's retry back-off: 25 ms base interval, doubled per retry, at most 10× the base, fully jittered. */
const BASE_BACKOFF_MS = 25;
const MAX_BACKOFF_MS = 250;

/** A route's retry policy, parsed once per configuration. */
export interface RetryPolicy {
  /** Retries after the first try. */
  attempts: number;
  /** Per-try timeout in ms; 0 = none (the route timeout still bounds the whole request). */
  perTryTimeoutMs: number;
  conditions: ReadonlySet<string>;
  /** Response statuses retried under `retriable-status-codes` (numbers written in retryOn; Istio's default 503). */
  statuses: ReadonlySet<number>;
  grpcCodes: ReadonlySet<number>;
}

const cache = new WeakMap<HttpRetries, RetryPolicy | null>();

/** The policy of a route's `retries`, or null when it retries nothing (absent, or attempts 0). */
export function retryPolicyOf(retries: HttpRetries | undefined): RetryPolicy | null {
  if (!retries || retries.attempts <= 0) return null;
  let policy = cache.get(retries);
  if (policy === undefined) {
    const parsed = parseRetryOn(retries.retryOn ?? DEFAULT_RETRY_ON);
    policy = { attempts: retries.attempts, perTryTimeoutMs: retries.perTryTimeout ?? 0, conditions: parsed.conditions, statuses: parsed.statuses, grpcCodes: parsed.grpcCodes };
    cache.set(retries, policy);
  }
  return policy;
}

/** Whether a failure to get a response (connect error, reset, per-try timeout, refused stream) is retried. */
export function retriesFailure(policy: RetryPolicy, err: UpstreamError, refusedStream: boolean): boolean {
  const c = policy.conditions;
  if (refusedStream) return c.has('refused-stream') || c.has('5xx');
  switch (err.reason) {
    case ProxyErrorReason.CONNECT_FAILURE:
    case ProxyErrorReason.CONNECT_TIMEOUT:
    case ProxyErrorReason.TLS_FAILURE:
      return c.has('connect-failure') || c.has('5xx') || c.has('gateway-error') || c.has('reset');
    case ProxyErrorReason.RESET:
      return c.has('reset') || c.has('5xx') || c.has('gateway-error');
    case ProxyErrorReason.TIMEOUT:
      return c.has('5xx') || c.has('gateway-error') || c.has('reset');
    default:
      return false;
  }
}

/** Whether a response head (status, and grpc-status of a trailers-only gRPC answer) is retried. */
export function retriesResponse(policy: RetryPolicy, status: number, grpcStatus: string | undefined): boolean {
  const c = policy.conditions;
  if (c.has('5xx') && status >= 500) return true;
  if (c.has('gateway-error') && (status === 502 || status === 503 || status === 504)) return true;
  if (c.has('retriable-4xx') && status === 409) return true;
  if (c.has('retriable-status-codes') && policy.statuses.has(status)) return true;
  return grpcStatus !== undefined && policy.grpcCodes.has(Number(grpcStatus));
}

/** The wait before retry number `n` (1-based): Envoy's fully jittered exponential back-off. */
export function retryBackoffMs(n: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** (n - 1));
  return Math.floor(random() * ceiling);
}
