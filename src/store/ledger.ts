/**
 * The certificate ledger: every certificate the CA issues, its revocation, the CRL number counter and audit
 * events. The interface is async although the SQLite backend is synchronous, so that a PostgreSQL backend (several
 * `meshcert serve` replicas sharing one database) fits it unchanged.
 */

import type { RevocationReason } from '../pki/index.js';

// One list of RFC 5280 reasons for the whole code base: the toolkit's, which CRLs and OCSP encode.
export { REVOCATION_REASONS } from '../pki/index.js';
export type { RevocationReason };

export type CertificateProfile = 'svid' | 'server' | 'client' | 'ca' | 'ocsp-signer';

/** Every CertificateProfile, for validating input that arrives as plain text. */
export const CERTIFICATE_PROFILES = ['svid', 'server', 'client', 'ca', 'ocsp-signer'] as const satisfies readonly CertificateProfile[];

export interface NewLedgerEntry {
  /** Lowercase hex without leading zeros (normalized by the caller; the ledger lowercases it again). */
  serial: string;
  /** Hex of the issuing CA's subject key identifier: several CAs may share a ledger during a rotation. */
  issuerKeyId: string;
  /** RFC 4514 text. */
  subject: string;
  /** e.g. ["URI:spiffe://cluster.local/ns/a/sa/b", "DNS:foo", "IP:10.0.0.1"] */
  sans: string[];
  /** SPIFFE ID or primary DNS name. */
  identity: string | null;
  profile: CertificateProfile;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 hex of the DER. */
  fingerprint: string;
  pem: string;
}

export interface LedgerEntry extends NewLedgerEntry {
  /** Expiry is not a stored status: callers compute it from notAfter at the instant they care about. */
  status: 'valid' | 'revoked';
  issuedAt: Date;
  revokedAt: Date | null;
  revocationReason: RevocationReason | null;
  invalidityDate: Date | null;
}

export interface RevokeResult {
  entry: LedgerEntry;
  alreadyRevoked: boolean;
}

export interface ListQuery {
  /** Stored status; a 'valid' certificate may still have expired (see notAfter). */
  status?: 'valid' | 'revoked';
  identity?: string;
  issuerKeyId?: string;
  /** No limit when absent. */
  limit?: number;
  offset?: number;
  /**
   * When given, certificates whose notAfter is before this instant are left out: the list then holds live
   * certificates plus those that expired at or after it ("include expired ones back to this date"). When absent,
   * expired certificates are listed too.
   */
  includeExpiredBefore?: Date;
}

export interface AuditEventInput {
  type: string;
  subject?: string;
  details?: Record<string, unknown>;
}

export interface AuditEvent {
  id: number;
  at: Date;
  type: string;
  subject: string | null;
  details: Record<string, unknown> | null;
}

export interface LedgerCounts {
  total: number;
  valid: number;
  revoked: number;
}

export interface Ledger {
  /** Throws MeshError LEDGER on a duplicate (issuer, serial) or any write failure; nothing is half-written. */
  record(entry: NewLedgerEntry): Promise<LedgerEntry>;
  /** All entries in one transaction (batching on the hot path): either all are recorded or none. */
  recordMany(entries: NewLedgerEntry[]): Promise<LedgerEntry[]>;
  /**
   * Without issuerKeyId a serial known under several issuers is ambiguous: that is a LEDGER error naming the
   * issuers, never a guess.
   */
  get(serial: string, issuerKeyId?: string): Promise<LedgerEntry | null>;
  /** Newest first. */
  list(query?: ListQuery): Promise<LedgerEntry[]>;
  /**
   * Marks a certificate revoked and writes an audit event in the same transaction. Unknown serial: MeshError
   * NOT_FOUND naming the serial. Without issuerKeyId, a serial known under several issuers is a LEDGER error.
   *
   * Revoking twice is harmless: the stored entry comes back unchanged with alreadyRevoked=true and nothing is
   * written, so retries have no side effects. Two exceptions, because the new request carries information CRL and
   * OCSP readers must see (alreadyRevoked is still true, and an audit event 'revoke-reason-changed' is written):
   *  - keyCompromise replaces any other reason (relying parties treat it differently, e.g. distrust signatures made
   *    before the revocation date); a given invalidityDate replaces the stored one (when the key was compromised);
   *  - a certificateHold, the only reversible reason (RFC 5280 5.3.1), becomes final with any other reason.
   * The original revokedAt is kept in both cases: the certificate has been revoked since then, and CRLs already
   * published say so. removeFromCRL is refused (LEDGER): it only releases a hold in delta CRLs.
   */
  revoke(serial: string, reason: RevocationReason, at: Date, invalidityDate?: Date, issuerKeyId?: string): Promise<RevokeResult>;
  /** For CRLs. When notExpiredAt is given, certificates whose notAfter is before it are left out. */
  listRevoked(issuerKeyId?: string, notExpiredAt?: Date): Promise<LedgerEntry[]>;
  /** Persistent, strictly increasing per issuer, starts at 1. */
  nextCrlNumber(issuerKeyId: string): Promise<bigint>;
  /**
   * Marks a one-time credential (e.g. a bootstrap token, by a non-secret id such as its hash) as used. Atomic: true
   * for the first caller ever to consume `tokenId`, false for every later one, across processes sharing the ledger.
   */
  consumeToken(tokenId: string, at: Date): Promise<boolean>;
  audit(event: AuditEventInput): Promise<void>;
  /** Newest first. */
  auditEvents(limit?: number): Promise<AuditEvent[]>;
  counts(): Promise<LedgerCounts>;
  close(): Promise<void>;
}
