/** Istio's retryOn when a route sets `retries` without it (what istiod writes into Envoy's retry_policy). */
export const DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';

/** The gRPC status names Envoy's retry_on knows, with their codes. */
const GRPC_CONDITIONS: Record<string, number> = {
  cancelled: 1,
  'deadline-exceeded': 4,
  'resource-exhausted': 8,
  internal: 13,
  unavailable: 14,
};

const HTTP_CONDITIONS = new Set(['5xx', 'gateway-error', 'reset', 'connect-failure', 'refused-stream', 'retriable-4xx', 'retriable-status-codes']);

export interface ParsedRetryOn {
  conditions: Set<string>;
  /** Response statuses retried under `retriable-status-codes` (numbers written in retryOn; Istio's default 503). */
  statuses: Set<number>;
  grpcCodes: Set<number>;
  /** Words that are none of the above, as written. */
  unknown: string[];
}

/**
 * Parses a VirtualService retryOn as Istio does: Envoy's condition names, gRPC status names, and HTTP status numbers
 * (which Istio turns into retriable_status_codes).
 */
export function parseRetryOn(retryOn: string): ParsedRetryOn {
  const conditions = new Set<string>();
  const statuses = new Set<number>();
  const grpcCodes = new Set<number>();
  const unknown: string[] = [];
  for (const raw of retryOn.split(',')) {
    const word = raw.trim().toLowerCase();
    if (!word) continue;
    if (/^\d{3}$/.test(word)) {
      statuses.add(Number(word));
      conditions.add('retriable-status-codes');
    } else if (word in GRPC_CONDITIONS) grpcCodes.add(GRPC_CONDITIONS[word]!);
    else if (HTTP_CONDITIONS.has(word)) conditions.add(word);
    else unknown.push(raw.trim());
  }
  // Istio: retriable-status-codes without numbers means 503.
  if (conditions.has('retriable-status-codes') && statuses.size === 0) statuses.add(503);
  return { conditions, statuses, grpcCodes, unknown };
}
