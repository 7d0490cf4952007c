/**
 * Why the gateway answered a request itself, with the status it used: each reason is a stable value of the
 * `x-meshcert-error` response header, of the access log's `error` field and of the `reason` metric label (like
 * Envoy's response flags UF, UH, UT, NR…, spelled out).
 */
export const ProxyErrorReason = {
  NO_ROUTE: 'no_route',
  NO_UPSTREAM: 'no_healthy_upstream',
  CONNECT_FAILURE: 'upstream_connect_failure',
  CONNECT_TIMEOUT: 'upstream_connect_timeout',
  TLS_FAILURE: 'upstream_tls_failure',
  TLS_CREDENTIALS: 'upstream_tls_credentials',
  RESET: 'upstream_reset',
  BAD_RESPONSE: 'upstream_bad_response',
  TIMEOUT: 'upstream_timeout',
  ADMISSION_DENIED: 'admission_denied',
  RBAC_DENIED: 'rbac_access_denied',
  METHOD_NOT_ALLOWED: 'method_not_allowed',
  BAD_REQUEST: 'bad_request',
  DOWNSTREAM_RESET: 'downstream_reset',
  OVERLOADED: 'overloaded',
  INTERNAL: 'internal_error',
} as const;
export type ProxyErrorReasonCode = (typeof ProxyErrorReason)[keyof typeof ProxyErrorReason];

/** The short body of a local reply for each reason (no upstream address or detail: those go to the access log). */
export const REASON_TEXT: Record<ProxyErrorReasonCode, string> = {
  no_route: 'no route',
  no_healthy_upstream: 'no healthy upstream',
  upstream_connect_failure: 'upstream connect error',
  upstream_connect_timeout: 'upstream connect timeout',
  upstream_tls_failure: 'upstream TLS error',
  upstream_tls_credentials: 'upstream TLS credentials unavailable',
  upstream_reset: 'upstream reset before response',
  upstream_bad_response: 'upstream sent an invalid response',
  upstream_timeout: 'upstream request timeout',
  admission_denied: 'forbidden',
  // Envoy's RBAC filter answers with exactly this body; scripts written for Istio grep for it.
  rbac_access_denied: 'RBAC: access denied',
  method_not_allowed: 'method not allowed',
  bad_request: 'bad request',
  downstream_reset: 'downstream reset',
  overloaded: 'overloaded',
  internal_error: 'internal error',
};

/**
 * A failure to reach or hear from an upstream, classified into the status the gateway answers with. `message`
 * is the detail for logs (it names the upstream); clients get REASON_TEXT plus `clientDetail` when set.
 */
export class UpstreamError extends Error {
  constructor(
    readonly status: number,
    readonly reason: ProxyErrorReasonCode,
    message: string,
    options?: { cause?: unknown; clientDetail?: string },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UpstreamError';
    this.clientDetail = options?.clientDetail;
  }
  readonly clientDetail: string | undefined;
}

const TLS_VERIFY_CODES = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_MESHCERT_UPSTREAM_SAN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_PURPOSE',
  'UNABLE_TO_GET_CRL',
  'CRL_HAS_EXPIRED',
  'EPROTO',
]);

/**
 * Classifies an error met while talking to `upstream` (host:port): before the connection was up it is a connect
 * or TLS failure (503), a reset or garbage afterwards is 502, an elapsed request timeout 504.
 */
export function classifyUpstreamError(err: unknown, upstream: string, connected: boolean): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const e = err as NodeJS.ErrnoException & { reason?: string };
  const code = e?.code ?? '';
  const text = e?.message ?? String(err);
  if (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
    const detail = code === 'ERR_MESHCERT_UPSTREAM_SAN' ? 'certificate does not match the expected subjectAltNames' : code || 'handshake failed';
    return new UpstreamError(503, ProxyErrorReason.TLS_FAILURE, `upstream ${upstream}: TLS error: ${text}`, { cause: err, clientDetail: detail });
  }
  if (code.startsWith('HPE_') || code === 'ERR_HTTP2_PROTOCOL_ERROR' || code === 'ERR_INVALID_HTTP_TOKEN') {
    return new UpstreamError(502, ProxyErrorReason.BAD_RESPONSE, `upstream ${upstream}: bad response: ${text}`, { cause: err });
  }
  if (code === 'UPSTREAM_CONNECT_TIMEOUT') {
    return new UpstreamError(503, ProxyErrorReason.CONNECT_TIMEOUT, `upstream ${upstream}: ${text}`, { cause: err });
  }
  if (!connected) {
    return new UpstreamError(503, ProxyErrorReason.CONNECT_FAILURE, `upstream ${upstream}: connect error: ${code || text}`, { cause: err });
  }
  return new UpstreamError(502, ProxyErrorReason.RESET, `upstream ${upstream}: reset before the response was complete (${code || text})`, { cause: err });
}

/** The gRPC status for an HTTP status the gateway answers with, as Envoy maps them (local replies to gRPC calls). */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}
