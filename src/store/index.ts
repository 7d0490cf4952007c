// The public face of the ledger: other folders import only this file.
export { REVOCATION_REASONS, CERTIFICATE_PROFILES } from './ledger.js';
export type {
  RevocationReason,
  CertificateProfile,
  NewLedgerEntry,
  LedgerEntry,
  RevokeResult,
  ListQuery,
  AuditEventInput,
  AuditEvent,
  LedgerCounts,
  Ledger,
} from './ledger.js';
export { SqliteLedger, openLedger } from './sqlite-ledger.js';
export type { SqliteLedgerOptions } from './sqlite-ledger.js';
export { BatchingLedger } from './batching-ledger.js';
export type { BatchingLedgerOptions, BatchingLedgerStats } from './batching-ledger.js';
