/**
 * Every failure a user can meet is a MeshError with a stable `code` (for scripts, metrics and tests) and a message
 * that names the file, field, value or peer at fault. Codes are part of the public interface: never rename one.
 */
export const ErrorCodes = {
  USAGE: 'MESH_ERR_USAGE',
  INVALID_ARGUMENT: 'MESH_ERR_INVALID_ARGUMENT',
  DURATION: 'MESH_ERR_DURATION',
  FILE_READ: 'MESH_ERR_FILE_READ',
  FILE_WRITE: 'MESH_ERR_FILE_WRITE',
  PEM: 'MESH_ERR_PEM',
  DER: 'MESH_ERR_DER',
  UNKNOWN_FORMAT: 'MESH_ERR_UNKNOWN_FORMAT',
  KEY_PARSE: 'MESH_ERR_KEY_PARSE',
  KEY_TYPE: 'MESH_ERR_KEY_TYPE',
  KEY_TOO_WEAK: 'MESH_ERR_KEY_TOO_WEAK',
  KEY_MISMATCH: 'MESH_ERR_KEY_MISMATCH',
  CERT_PARSE: 'MESH_ERR_CERT_PARSE',
  CERT_BUILD: 'MESH_ERR_CERT_BUILD',
  CSR_PARSE: 'MESH_ERR_CSR_PARSE',
  CSR_SIGNATURE: 'MESH_ERR_CSR_SIGNATURE',
  CRL_PARSE: 'MESH_ERR_CRL_PARSE',
  CRL_SIGNATURE: 'MESH_ERR_CRL_SIGNATURE',
  OCSP_PARSE: 'MESH_ERR_OCSP_PARSE',
  OCSP_BUILD: 'MESH_ERR_OCSP_BUILD',
  SPIFFE_ID: 'MESH_ERR_SPIFFE_ID',
  SVID: 'MESH_ERR_SVID',
  SERIAL: 'MESH_ERR_SERIAL',
  NAME: 'MESH_ERR_NAME',
  SAN: 'MESH_ERR_SAN',
  CHAIN: 'MESH_ERR_CHAIN',
  CA_NOT_FOUND: 'MESH_ERR_CA_NOT_FOUND',
  CA_EXISTS: 'MESH_ERR_CA_EXISTS',
  CA_INVALID: 'MESH_ERR_CA_INVALID',
  CA_PLUGIN: 'MESH_ERR_CA_PLUGIN',
  POLICY: 'MESH_ERR_POLICY',
  TTL: 'MESH_ERR_TTL',
  LEDGER: 'MESH_ERR_LEDGER',
  NOT_FOUND: 'MESH_ERR_NOT_FOUND',
  REVOCATION_REASON: 'MESH_ERR_REVOCATION_REASON',
  CONFIG: 'MESH_ERR_CONFIG',
  UNAUTHENTICATED: 'MESH_ERR_UNAUTHENTICATED',
  PERMISSION_DENIED: 'MESH_ERR_PERMISSION_DENIED',
  RATE_LIMITED: 'MESH_ERR_RATE_LIMITED',
  UNAVAILABLE: 'MESH_ERR_UNAVAILABLE',
  INTERNAL: 'MESH_ERR_INTERNAL',
  CRL_BUILD: 'MESH_ERR_CRL_BUILD',
  CLIENT_HELLO: 'MESH_ERR_CLIENT_HELLO',
  CLIENT_HELLO_TIMEOUT: 'MESH_ERR_CLIENT_HELLO_TIMEOUT',
  IDENTITY_MISMATCH: 'MESH_ERR_IDENTITY_MISMATCH',
  BUMP_UPSTREAM: 'MESH_ERR_BUMP_UPSTREAM',
  BUMP_UPSTREAM_CERTIFICATE: 'MESH_ERR_BUMP_UPSTREAM_CERTIFICATE',
  BUMP_NO_SERVER_NAME: 'MESH_ERR_BUMP_NO_SERVER_NAME',
  BUMP_FILTER: 'MESH_ERR_BUMP_FILTER',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface MeshErrorOptions {
  /** The file, field, value or peer at fault, for structured output (`--json`, logs). */
  subject?: string;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class MeshError extends Error {
  readonly code: ErrorCode;
  readonly subject: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: MeshErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.subject = options.subject;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      ...(this.subject ? { subject: this.subject } : {}),
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

export function isMeshError(err: unknown, code?: ErrorCode): err is MeshError {
  return err instanceof MeshError && (code === undefined || err.code === code);
}

/** A short text for an unknown thrown value, to embed in a MeshError message. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
