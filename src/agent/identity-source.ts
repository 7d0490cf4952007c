import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeJwt } from 'jose';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/** How the agent proves who it is to the CA, as istio-agent does. */
export type CredentialMethod = 'token' | 'bootstrap-token' | 'certificate';

/** What one certificate request carries. */
export interface AgentCredential {
  method: CredentialMethod;
  /** Sent as `authorization: Bearer …` (token and bootstrap-token). */
  bearerToken?: string;
  /** Presented in the TLS handshake (certificate: renewal with the current certificate). */
  clientCert?: { certChainPem: string; keyPem: string };
  /**
   * The end of the SPIFFE ID path the credential stands for, when the agent can tell: `/ns/NS/sa/SA` from a
   * Kubernetes service-account token's `sub` (system:serviceaccount:NS:SA). Null when unknown (bootstrap tokens).
   */
  expectedPathSuffix: string | null;
  /** True when the token file's content differs from the one used for the previous request. */
  tokenChanged: boolean;
  /** Stands for the credential without revealing it (a digest of the token; 'certificate'): a change of credential may change the identity. */
  credentialId: string;
  /** Words for logs: "service-account token /var/run/…/token", never the token. */
  describe: string;
}

/** The certificate the agent holds, as far as credentials are concerned. */
export interface CurrentCertificate {
  certChainPem: string;
  keyPem: string;
  notAfter: Date;
}

export interface IdentitySourceOptions {
  /** A Kubernetes service-account JWT (or any token the CA's auth.jwt accepts), re-read when it changes. */
  tokenFile?: string;
  /** A bootstrap token (auth.bootstrapTokens): for the first certificate, and when the current one cannot renew. */
  bootstrapTokenFile?: string;
}

/** A token file read as Kubernetes mounts it: trimmed, re-read when it changes, never logged. */
class TokenFile {
  #digest: string | null = null;

  constructor(
    readonly path: string,
    readonly option: string,
  ) {}

  read(): { token: string; changed: boolean; digest: string } {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : describeError(err);
      throw new MeshError(ErrorCodes.FILE_READ, `${this.option} ${this.path}: cannot read the token: ${why}`, { subject: this.path, cause: err });
    }
    const token = text.trim();
    if (!token) throw new MeshError(ErrorCodes.FILE_READ, `${this.option} ${this.path}: the file is empty (no token)`, { subject: this.path });
    const digest = createHash('sha256').update(token).digest('hex');
    const changed = this.#digest !== null && this.#digest !== digest;
    this.#digest = digest;
    return { token, changed, digest };
  }
}

/** `/ns/NS/sa/SA` from a service-account token's subject, or null when the token is not one (or not a JWT). */
export function serviceAccountPathOf(token: string): string | null {
  try {
    const sub = decodeJwt(token).sub;
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(sub ?? '');
    return m ? `/ns/${m[1]}/sa/${m[2]}` : null;
  } catch {
    return null;
  }
}

/**
 * Chooses the credential of each request:
 *  - with a token file, always the token (re-read each time, so a projected token Kubernetes rotates is used as
 *    soon as it changes), as istio-agent does in Kubernetes;
 *  - otherwise the current certificate while it is valid (renewal, client-certificate auth), and the bootstrap
 *    token for the first certificate, after expiry, or once the CA refused the certificate (e.g. revoked);
 *  - with neither, only the current certificate (an agent restarted over an --out-dir that holds one).
 */
export class IdentitySource {
  readonly #token: TokenFile | null;
  readonly #bootstrap: TokenFile | null;

  constructor(options: IdentitySourceOptions) {
    if (options.tokenFile && options.bootstrapTokenFile) {
      throw new MeshError(ErrorCodes.USAGE, 'give at most one of --token-file and --bootstrap-token-file', { subject: '--token-file' });
    }
    this.#token = options.tokenFile ? new TokenFile(options.tokenFile, '--token-file') : null;
    this.#bootstrap = options.bootstrapTokenFile ? new TokenFile(options.bootstrapTokenFile, '--bootstrap-token-file') : null;
  }

  get hasToken(): boolean {
    return this.#token !== null || this.#bootstrap !== null;
  }

  /** Reads the token file now, so that a missing or empty one is a clear error at start. */
  check(): void {
    this.#token?.read();
    this.#bootstrap?.read();
  }

  /**
   * The credential for the next request. `avoidCertificate` skips renewal with the current certificate (the CA
   * refused it); it matters only when a bootstrap token is there to fall back to.
   */
  credentialFor(current: CurrentCertificate | null, now: Date, avoidCertificate = false): AgentCredential {
    if (this.#token) {
      const { token, changed, digest } = this.#token.read();
      return {
        method: 'token',
        bearerToken: token,
        expectedPathSuffix: serviceAccountPathOf(token),
        tokenChanged: changed,
        credentialId: digest,
        describe: `token ${this.#token.path}`,
      };
    }
    const usable = current !== null && current.notAfter.getTime() > now.getTime();
    if (usable && !(avoidCertificate && this.#bootstrap)) {
      return {
        method: 'certificate',
        clientCert: { certChainPem: current.certChainPem, keyPem: current.keyPem },
        expectedPathSuffix: null,
        tokenChanged: false,
        credentialId: 'certificate',
        describe: `the current certificate (valid until ${current.notAfter.toISOString()})`,
      };
    }
    if (this.#bootstrap) {
      const { token, changed, digest } = this.#bootstrap.read();
      return { method: 'bootstrap-token', bearerToken: token, expectedPathSuffix: null, tokenChanged: changed, credentialId: digest, describe: `bootstrap token ${this.#bootstrap.path}` };
    }
    throw new MeshError(
      ErrorCodes.UNAUTHENTICATED,
      current
        ? `no credential left: the certificate expired at ${current.notAfter.toISOString()} and there is no --token-file or --bootstrap-token-file to get a new one`
        : 'no credential: give --token-file or --bootstrap-token-file (or an --out-dir holding a current certificate to renew)',
      { subject: '--token-file' },
    );
  }
}
