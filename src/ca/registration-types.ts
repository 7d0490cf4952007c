import type { Certificate, SpiffeId } from '../pki/index.js';

/**
 * What the transport (gRPC) knows about a caller, handed to the registration authority. The RA never sees gRPC
 * types, so another transport (HTTP, a test) can drive it.
 */
export interface CallContext {
  /** The `authorization` metadata value, e.g. "Bearer eyJ…", if any. */
  authorization?: string;
  /** The verified-by-TLS client certificate chain (leaf first), if the caller presented one. */
  peerCertificates?: Certificate[];
  /** For audit and rate-limit messages only. */
  remoteAddress?: string;
}

export type AuthMethod = 'jwt' | 'client-certificate' | 'bootstrap-token';

/** Who the caller is, as proven by one authenticator. */
export interface CallerIdentity {
  spiffeId: SpiffeId;
  method: AuthMethod;
  /** A short, non-secret description for audit: token issuer + subject, certificate serial, bootstrap token name. */
  principal: string;
}

/**
 * An authenticator looks at the context: `null` when its kind of credential is absent (the next one is tried);
 * a MeshError UNAUTHENTICATED when the credential is present but bad (expired, wrong signature, replayed).
 */
export interface Authenticator {
  readonly method: AuthMethod;
  authenticate(ctx: CallContext): Promise<CallerIdentity | null>;
}

/** A CreateCertificate request as the Istio CA API carries it. */
export interface CertificateSigningRequest {
  csrPem: string;
  /** Requested lifetime in seconds (validity_duration); 0 or absent means the default. */
  validitySeconds?: number;
  metadata?: Record<string, unknown>;
}

/** The Istio CA API response: leaf, intermediates, and the trust bundle (every root, concatenated) as last element. */
export interface CertificateSigningResponse {
  certChain: string[];
  serial: string;
  identity: string;
}
