import { ErrorCodes, MeshError, describeError, type ErrorCode } from '../core/index.js';

export interface AdminClientOptions {
  /** Base URL of the admin API, e.g. http://127.0.0.1:15016. */
  server: string;
  /** The bearer token (the contents of the server's admin token file, trimmed). */
  token: string;
  timeoutMs?: number;
}

/** A certificate as the admin API returns it (see certificateJson on the server). */
export interface AdminCertificate {
  serial: string;
  identity: string | null;
  subject: string;
  sans: string[];
  profile: string;
  status: 'valid' | 'revoked' | 'expired';
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  revokedAt: string | null;
  reason: string | null;
  invalidityDate: string | null;
  fingerprint: string;
}

export interface AdminRevokeResult extends AdminCertificate {
  alreadyRevoked: boolean;
  /** Caches (ocsp, crl) that had not confirmed the change when the server answered. */
  lagging: string[];
}

/** MeshError code for an admin API status, so the CLI exits and reports as for the offline commands. */
function codeFor(status: number): ErrorCode {
  if (status === 401) return ErrorCodes.UNAUTHENTICATED;
  if (status === 403) return ErrorCodes.PERMISSION_DENIED;
  if (status === 404) return ErrorCodes.NOT_FOUND;
  if (status === 400 || status === 413) return ErrorCodes.INVALID_ARGUMENT;
  if (status === 503) return ErrorCodes.UNAVAILABLE;
  return ErrorCodes.INTERNAL;
}

function endpoint(server: string, path: string): URL {
  let base: URL;
  try {
    base = new URL(server.endsWith('/') ? server : `${server}/`);
  } catch {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--server: "${server}" is not a URL; e.g. http://127.0.0.1:15016`, { subject: '--server' });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `--server: "${server}" is not an http(s) URL`, { subject: '--server' });
  }
  return new URL(path, base);
}

async function call<T>(options: AdminClientOptions, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const url = endpoint(options.server, path);
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${options.token}`,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? describeError(err);
    throw new MeshError(ErrorCodes.UNAVAILABLE, `admin API at ${url.origin}: cannot connect: ${why}`, { subject: url.origin, cause: err });
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const e = (parsed as { error?: { message?: string; code?: string } } | null)?.error;
    throw new MeshError(codeFor(res.status), `admin API at ${url.origin}: ${e?.message ?? `HTTP ${res.status}`} (HTTP ${res.status})`, {
      subject: url.origin,
      details: { httpStatus: res.status, ...(e?.code ? { apiCode: e.code } : {}) },
    });
  }
  if (parsed === null || typeof parsed !== 'object') {
    throw new MeshError(ErrorCodes.INTERNAL, `admin API at ${url.origin}: the answer is not JSON`, { subject: url.origin });
  }
  return parsed as T;
}

/** POST /revoke: revokes through a running `meshcert serve`, whose OCSP and CRL answers follow at once. */
export function adminRevoke(
  options: AdminClientOptions & { serial: string; reason?: string; invalidityDate?: Date },
): Promise<AdminRevokeResult> {
  return call<AdminRevokeResult>(options, 'POST', 'revoke', {
    serial: options.serial,
    ...(options.reason ? { reason: options.reason } : {}),
    ...(options.invalidityDate ? { invalidityDate: options.invalidityDate.toISOString() } : {}),
  });
}

/** GET /certificates. */
export async function adminListCertificates(
  options: AdminClientOptions & { status?: 'valid' | 'revoked'; identity?: string; limit?: number; offset?: number },
): Promise<AdminCertificate[]> {
  const q = new URLSearchParams();
  if (options.status) q.set('status', options.status);
  if (options.identity) q.set('identity', options.identity);
  if (options.limit !== undefined) q.set('limit', String(options.limit));
  if (options.offset !== undefined) q.set('offset', String(options.offset));
  const res = await call<{ certificates: AdminCertificate[] }>(options, 'GET', `certificates${q.size ? `?${q}` : ''}`);
  return res.certificates;
}
