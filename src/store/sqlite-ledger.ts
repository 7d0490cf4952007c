import { closeSync, mkdirSync, openSync, readSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { ErrorCodes, MeshError, describeError, systemClock } from '../core/index.js';
import type { Clock } from '../core/index.js';
import {
  CERTIFICATE_PROFILES,
  REVOCATION_REASONS,
  type AuditEvent,
  type AuditEventInput,
  type CertificateProfile,
  type Ledger,
  type LedgerCounts,
  type LedgerEntry,
  type ListQuery,
  type NewLedgerEntry,
  type RevocationReason,
  type RevokeResult,
} from './ledger.js';

export interface SqliteLedgerOptions {
  clock?: Clock;
  /** Open an existing ledger for reading only (inspection tools); writes then fail with LEDGER. */
  readonly?: boolean;
}

/** 'mesh' in ASCII, written to the SQLite header so that another application's database is never migrated. */
const APPLICATION_ID = 0x6d657368;

/**
 * Schema migrations, applied in order from PRAGMA user_version inside one transaction. Never edit a released step:
 * append a new one. Times are integer milliseconds since the epoch: exactly what a JS Date holds, so they round-trip
 * without loss, compare cheaply and index compactly. CRL numbers are decimal TEXT because RFC 5280 allows up to
 * 20 octets, more than SQLite's 64-bit INTEGER.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE certificates (
    id                INTEGER PRIMARY KEY,
    serial            TEXT    NOT NULL CHECK (serial <> '' AND serial NOT GLOB '*[^0-9a-f]*'),
    issuer_key_id     TEXT    NOT NULL CHECK (issuer_key_id <> ''),
    subject           TEXT    NOT NULL,
    sans              TEXT    NOT NULL,   -- JSON array of "TYPE:value"
    identity          TEXT,
    profile           TEXT    NOT NULL CHECK (profile IN ('svid', 'server', 'client', 'ca', 'ocsp-signer')),
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    fingerprint       TEXT    NOT NULL,
    pem               TEXT    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'revoked')),
    issued_at         INTEGER NOT NULL,
    revoked_at        INTEGER,
    revocation_reason TEXT,
    invalidity_date   INTEGER,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL AND revocation_reason IS NOT NULL))
  );
  -- serial first: the same unique index serves lookups by serial alone (get/revoke without an issuer).
  CREATE UNIQUE INDEX certificates_serial_issuer ON certificates (serial, issuer_key_id);
  -- No index on issued_at: "newest first" is id order (commit order, a total order even when clocks step back or
  -- several processes share the file), and every index is another page written per commit on the hot path.
  -- An index entry carries the rowid, so this one also serves "WHERE identity = ? ORDER BY id DESC".
  CREATE INDEX certificates_identity ON certificates (identity);
  -- partial: costs nothing on the issuance hot path (new rows are 'valid') and keeps CRL building cheap.
  CREATE INDEX certificates_revoked ON certificates (issuer_key_id, revoked_at) WHERE status = 'revoked';

  CREATE TABLE crl_numbers (
    issuer_key_id TEXT PRIMARY KEY,
    last          TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE audit_events (
    -- No AUTOINCREMENT: it writes sqlite_sequence on every insert. Ids could only be reused if the newest events
    -- were deleted, and pruning deletes the oldest.
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    subject TEXT,
    details TEXT                                -- JSON object
  );
  `,
  `
  -- One-time credentials (bootstrap tokens) already spent: the primary key makes "first use wins" atomic, across
  -- processes too. Ids are opaque to the ledger (the RA stores a hash, never a token).
  CREATE TABLE consumed_tokens (
    token_id    TEXT    PRIMARY KEY CHECK (token_id <> ''),
    consumed_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
];
const SCHEMA_VERSION = MIGRATIONS.length;

const COLUMNS =
  'serial, issuer_key_id, subject, sans, identity, profile, not_before, not_after, fingerprint, pem, status, issued_at, revoked_at, revocation_reason, invalidity_date';

interface CertificateRow {
  serial: string;
  issuer_key_id: string;
  subject: string;
  sans: string;
  identity: string | null;
  profile: string;
  not_before: number;
  not_after: number;
  fingerprint: string;
  pem: string;
  status: string;
  issued_at: number;
  revoked_at: number | null;
  revocation_reason: string | null;
  invalidity_date: number | null;
}

interface AuditRow {
  id: number;
  at: number;
  type: string;
  subject: string | null;
  details: string | null;
}

const HEX = /^[0-9a-f]+$/;
const REASONS: ReadonlySet<string> = new Set(REVOCATION_REASONS);
const PROFILES: ReadonlySet<string> = new Set(CERTIFICATE_PROFILES);

/**
 * The ledger on SQLite (better-sqlite3), the embedded default. All calls are synchronous underneath, so each method
 * runs to completion before another starts and transactions never interleave within a process; across processes,
 * write transactions are BEGIN IMMEDIATE and wait up to busy_timeout for the lock.
 */
export class SqliteLedger implements Ledger {
  /** Absolute path of the database file (or ":memory:"), named in every error. */
  readonly path: string;
  readonly readonly: boolean;
  readonly #clock: Clock;
  #db: Database.Database | null;
  readonly #stmts = new Map<string, Database.Statement>();
  readonly #insertCert: Database.Statement;
  readonly #insertAudit: Database.Statement;
  readonly #recordOne: Database.Transaction<(entry: LedgerEntry) => void>;
  readonly #recordBatch: Database.Transaction<(entries: LedgerEntry[]) => void>;

  private constructor(path: string, db: Database.Database, clock: Clock, readonly: boolean) {
    this.path = path;
    this.#db = db;
    this.#clock = clock;
    this.readonly = readonly;
    this.#insertCert = db.prepare(
      `INSERT INTO certificates (serial, issuer_key_id, subject, sans, identity, profile, not_before, not_after, fingerprint, pem, issued_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#insertAudit = db.prepare('INSERT INTO audit_events (at, type, subject, details) VALUES (?, ?, ?, ?)');
    this.#recordOne = db.transaction((entry: LedgerEntry) => this.#insert(entry));
    this.#recordBatch = db.transaction((entries: LedgerEntry[]) => {
      for (let i = 0; i < entries.length; i++) {
        try {
          this.#insert(entries[i]!);
        } catch (err) {
          // Say which entry broke the batch; the transaction wrapper rolls everything back.
          throw new BatchEntryError(i, entries[i]!, err);
        }
      }
    });
  }

  /**
   * Opens (creating if needed, mode 0600 in a 0700 folder) the ledger at `path`, migrating its schema. A file that
   * is not an SQLite database, is corrupted, belongs to another application or was written by a newer meshcert
   * gives a LEDGER error naming the file. ":memory:" gives a private in-memory ledger (tests).
   */
  static open(path: string, options: SqliteLedgerOptions = {}): SqliteLedger {
    const memory = path === ':memory:';
    const file = memory ? path : resolve(path);
    const readonly = options.readonly === true;
    const fail = (what: string, err?: unknown): MeshError =>
      err instanceof MeshError
        ? err
        : new MeshError(ErrorCodes.LEDGER, `${file}: ${what}${err === undefined ? '' : `: ${describeError(err)}`}`, {
            subject: file,
            ...(err === undefined ? {} : { cause: err }),
          });

    if (!memory && !readonly) {
      try {
        mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
        // Create the file ourselves so it starts 0600 whatever the umask; SQLite gives its -wal and -shm files
        // the main file's mode.
        closeSync(openSync(file, 'wx', 0o600));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fail('cannot create the ledger file', err);
      }
    }

    if (!memory) checkHeader(file, fail);

    let db: Database.Database;
    try {
      db = new Database(file, { readonly, fileMustExist: readonly });
    } catch (err) {
      throw fail(readonly ? 'cannot open the ledger for reading' : 'cannot open the ledger', err);
    }
    try {
      // Before anything that may wait on another process's lock (journal mode change, migration).
      db.pragma('busy_timeout = 5000');
      // The first statement that reads the header: a non-SQLite file fails here with "file is not a database".
      let version: number;
      try {
        version = db.pragma('user_version', { simple: true }) as number;
      } catch (err) {
        throw fail('not a meshcert ledger (not an SQLite database, or a corrupted one)', err);
      }
      if (version > SCHEMA_VERSION) {
        throw fail(`written by a newer meshcert (ledger schema ${version}; this one knows up to ${SCHEMA_VERSION})`);
      }
      // Ownership is settled before anything changes the file (journal mode included): another application's
      // database is refused untouched.
      if (version < SCHEMA_VERSION) {
        if (readonly) {
          throw fail(
            version === 0
              ? 'not a meshcert ledger (no ledger schema in it)'
              : `ledger schema ${version} needs migrating to ${SCHEMA_VERSION}: open it once read-write`,
          );
        }
        SqliteLedger.#migrate(db, fail);
      } else {
        const appId = db.pragma('application_id', { simple: true }) as number;
        if (appId !== APPLICATION_ID) throw fail('an SQLite database, but not a meshcert ledger');
      }
      if (!readonly) {
        // WAL: readers (OCSP, CRL, list) never block the issuing writer. NORMAL is durable across process crashes
        // and only risks the last commits on power loss, and spares an fsync per certificate.
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
      }
      db.pragma('foreign_keys = ON');
      return new SqliteLedger(file, db, options.clock ?? systemClock, readonly);
    } catch (err) {
      try {
        db.close();
      } catch {
        /* already failing; the first error is the one to report */
      }
      throw fail('cannot open the ledger', err);
    }
  }

  static #migrate(db: Database.Database, fail: (what: string, err?: unknown) => MeshError): void {
    db.transaction(() => {
      // Read again under the write lock: another process may have migrated while we waited for it.
      const current = db.pragma('user_version', { simple: true }) as number;
      if (current === 0) {
        const appId = db.pragma('application_id', { simple: true }) as number;
        const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").get() as { n: number };
        if ((appId !== 0 && appId !== APPLICATION_ID) || tables.n > 0) {
          throw fail('an SQLite database, but not a meshcert ledger; refusing to add tables to it');
        }
        db.pragma(`application_id = ${APPLICATION_ID}`);
      }
      for (let v = current; v < SCHEMA_VERSION; v++) {
        try {
          db.exec(MIGRATIONS[v]!);
        } catch (err) {
          throw fail(`cannot migrate the ledger schema from ${v} to ${v + 1}`, err);
        }
      }
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }).immediate();
  }

  async record(entry: NewLedgerEntry): Promise<LedgerEntry> {
    this.#open();
    const e = this.#check(entry, this.#now(), (serial) => `record certificate${serial ? ` serial ${serial}` : ''}`);
    try {
      // IMMEDIATE: take the write lock up front so another process cannot make us fail mid-transaction with BUSY.
      this.#recordOne.immediate(e);
    } catch (err) {
      throw this.#error(`cannot record certificate serial ${e.serial} (issuer ${e.issuerKeyId})`, err);
    }
    return e;
  }

  async recordMany(entries: NewLedgerEntry[]): Promise<LedgerEntry[]> {
    this.#open();
    if (!Array.isArray(entries)) throw this.#error('cannot record certificates: expected an array of entries');
    if (entries.length === 0) return [];
    // One issuedAt for the batch: it is one transaction, committed at one instant.
    const issuedAt = this.#now();
    const n = entries.length;
    const checked = entries.map((e, i) =>
      this.#check(e, issuedAt, (serial) => `record ${n} certificates (none recorded): certificate ${i + 1}${serial ? `, serial ${serial}` : ''}`),
    );
    try {
      this.#recordBatch.immediate(checked);
    } catch (err) {
      if (err instanceof BatchEntryError) {
        throw this.#error(
          `cannot record ${n} certificates (none recorded): certificate ${err.index + 1}, serial ${err.entry.serial} (issuer ${err.entry.issuerKeyId})`,
          err.cause,
        );
      }
      throw this.#error(`cannot record ${n} certificates (none recorded)`, err);
    }
    return checked;
  }

  async get(serial: string, issuerKeyId?: string): Promise<LedgerEntry | null> {
    this.#open();
    const s = normalizeHex(serial);
    const row = this.#find(s, issuerKeyId === undefined ? undefined : normalizeHex(issuerKeyId), 'look up');
    return row ? toEntry(row) : null;
  }

  async list(query: ListQuery = {}): Promise<LedgerEntry[]> {
    this.#open();
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.status !== undefined) {
      if (query.status !== 'valid' && query.status !== 'revoked') {
        throw this.#error(`cannot list certificates: status "${String(query.status)}" is neither "valid" nor "revoked"`);
      }
      where.push('status = ?');
      params.push(query.status);
    }
    if (query.identity !== undefined) {
      where.push('identity = ?');
      params.push(query.identity);
    }
    if (query.issuerKeyId !== undefined) {
      where.push('issuer_key_id = ?');
      params.push(normalizeHex(query.issuerKeyId));
    }
    if (query.includeExpiredBefore !== undefined) {
      where.push('not_after >= ?');
      params.push(this.#ms(query.includeExpiredBefore, 'list certificates', 'includeExpiredBefore'));
    }
    const limit = query.limit === undefined ? -1 : this.#count(query.limit, 'limit');
    const offset = query.offset === undefined ? 0 : this.#count(query.offset, 'offset');
    const sql =
      `SELECT ${COLUMNS} FROM certificates` +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      // Newest first = most recently recorded: id order, total even within a batch that shares one issuedAt.
      ' ORDER BY id DESC LIMIT ? OFFSET ?';
    try {
      return (this.#stmt(sql).all(...params, limit, offset) as CertificateRow[]).map(toEntry);
    } catch (err) {
      throw this.#error('cannot list certificates', err);
    }
  }

  /** The repeat and upgrade rules are documented on Ledger.revoke (every backend keeps them); see supersedes(). */
  async revoke(
    serial: string,
    reason: RevocationReason,
    at: Date,
    invalidityDate?: Date,
    issuerKeyId?: string,
  ): Promise<RevokeResult> {
    const db = this.#open();
    const s = normalizeHex(serial);
    const issuer = issuerKeyId === undefined ? undefined : normalizeHex(issuerKeyId);
    const action = `cannot revoke certificate serial ${s}`;
    if (!REASONS.has(reason)) {
      throw this.#error(`${action}: "${String(reason)}" is not a revocation reason; use one of ${REVOCATION_REASONS.join(', ')}`);
    }
    if (reason === 'removeFromCRL') {
      throw this.#error(`${action}: removeFromCRL is not a reason to revoke (it only releases a certificateHold in delta CRLs)`);
    }
    const atMs = this.#ms(at, action, 'revocation time');
    const invalidMs = invalidityDate === undefined ? null : this.#ms(invalidityDate, action, 'invalidity date');

    let result: RevokeResult;
    try {
      result = db
        .transaction((): RevokeResult => {
          const row = this.#find(s, issuer, 'revoke');
          if (!row) {
            throw new MeshError(
              ErrorCodes.NOT_FOUND,
              `${this.path}: ${action}: no such certificate in the ledger${issuer ? ` for issuer ${issuer}` : ''}`,
              { subject: s, details: { serial: s, ...(issuer ? { issuerKeyId: issuer } : {}) } },
            );
          }
          const update = this.#stmt(
            'UPDATE certificates SET status = ?, revoked_at = ?, revocation_reason = ?, invalidity_date = ? WHERE serial = ? AND issuer_key_id = ?',
          );
          if (row.status === 'revoked') {
            const stored = row.revocation_reason as RevocationReason;
            if (!supersedes(reason, stored)) return { entry: toEntry(row), alreadyRevoked: true };
            const invalidity = invalidMs ?? row.invalidity_date;
            update.run('revoked', row.revoked_at, reason, invalidity, row.serial, row.issuer_key_id);
            this.#auditRow('revoke-reason-changed', row.serial, {
              issuerKeyId: row.issuer_key_id,
              identity: row.identity,
              from: stored,
              to: reason,
              revokedAt: new Date(row.revoked_at!).toISOString(),
              ...(invalidity === null ? {} : { invalidityDate: new Date(invalidity).toISOString() }),
            });
            return {
              entry: toEntry({ ...row, revocation_reason: reason, invalidity_date: invalidity }),
              alreadyRevoked: true,
            };
          }
          update.run('revoked', atMs, reason, invalidMs, row.serial, row.issuer_key_id);
          this.#auditRow('revoke', row.serial, {
            issuerKeyId: row.issuer_key_id,
            identity: row.identity,
            reason,
            revokedAt: new Date(atMs).toISOString(),
            ...(invalidMs === null ? {} : { invalidityDate: new Date(invalidMs).toISOString() }),
          });
          return {
            entry: toEntry({ ...row, status: 'revoked', revoked_at: atMs, revocation_reason: reason, invalidity_date: invalidMs }),
            alreadyRevoked: false,
          };
        })
        .immediate();
    } catch (err) {
      throw this.#error(action, err);
    }
    return result;
  }

  async listRevoked(issuerKeyId?: string, notExpiredAt?: Date): Promise<LedgerEntry[]> {
    this.#open();
    const where = ["status = 'revoked'"];
    const params: unknown[] = [];
    if (issuerKeyId !== undefined) {
      where.push('issuer_key_id = ?');
      params.push(normalizeHex(issuerKeyId));
    }
    if (notExpiredAt !== undefined) {
      where.push('not_after >= ?');
      params.push(this.#ms(notExpiredAt, 'list revoked certificates', 'notExpiredAt'));
    }
    // Revocation order, then insertion order: a stable order keeps successive CRLs easy to diff.
    const sql = `SELECT ${COLUMNS} FROM certificates WHERE ${where.join(' AND ')} ORDER BY revoked_at, id`;
    try {
      return (this.#stmt(sql).all(...params) as CertificateRow[]).map(toEntry);
    } catch (err) {
      throw this.#error('cannot list revoked certificates', err);
    }
  }

  async nextCrlNumber(issuerKeyId: string): Promise<bigint> {
    const db = this.#open();
    const issuer = normalizeHex(issuerKeyId);
    const action = `cannot allocate a CRL number for issuer ${issuer || '(empty)'}`;
    if (!issuer) throw this.#error(`${action}: the issuer key id is empty`);
    try {
      // Read-modify-write under the write lock (IMMEDIATE), so two processes never hand out the same number.
      return db
        .transaction((): bigint => {
          const row = this.#stmt('SELECT last FROM crl_numbers WHERE issuer_key_id = ?').get(issuer) as { last: string } | undefined;
          const next = row ? BigInt(row.last) + 1n : 1n;
          this.#stmt(
            'INSERT INTO crl_numbers (issuer_key_id, last) VALUES (?, ?) ON CONFLICT (issuer_key_id) DO UPDATE SET last = excluded.last',
          ).run(issuer, next.toString());
          return next;
        })
        .immediate();
    } catch (err) {
      throw this.#error(action, err);
    }
  }

  async consumeToken(tokenId: string, at: Date): Promise<boolean> {
    this.#open();
    if (typeof tokenId !== 'string' || tokenId === '') throw this.#error('cannot consume a one-time token: the token id is empty');
    const atMs = this.#ms(at, 'cannot consume a one-time token', 'time');
    try {
      // INSERT OR IGNORE under the write lock: exactly one caller, in any process, sees a row inserted.
      return this.#stmt('INSERT OR IGNORE INTO consumed_tokens (token_id, consumed_at) VALUES (?, ?)').run(tokenId, atMs).changes === 1;
    } catch (err) {
      throw this.#error('cannot consume a one-time token', err);
    }
  }

  async audit(event: AuditEventInput): Promise<void> {
    this.#open();
    if (!event || typeof event.type !== 'string' || event.type === '') {
      throw this.#error('cannot write audit event: the event type is empty');
    }
    try {
      this.#auditRow(event.type, event.subject ?? null, event.details ?? null);
    } catch (err) {
      throw this.#error(`cannot write audit event "${event.type}"`, err);
    }
  }

  async auditEvents(limit = 100): Promise<AuditEvent[]> {
    this.#open();
    const n = this.#count(limit, 'limit');
    try {
      const rows = this.#stmt('SELECT id, at, type, subject, details FROM audit_events ORDER BY id DESC LIMIT ?').all(n) as AuditRow[];
      return rows.map((r) => ({
        id: r.id,
        at: new Date(r.at),
        type: r.type,
        subject: r.subject,
        details: r.details === null ? null : (JSON.parse(r.details) as Record<string, unknown>),
      }));
    } catch (err) {
      throw this.#error('cannot read audit events', err);
    }
  }

  async counts(): Promise<LedgerCounts> {
    this.#open();
    try {
      const row = this.#stmt(
        "SELECT count(*) AS total, coalesce(sum(status = 'revoked'), 0) AS revoked FROM certificates",
      ).get() as { total: number; revoked: number };
      return { total: row.total, valid: row.total - row.revoked, revoked: row.revoked };
    } catch (err) {
      throw this.#error('cannot count certificates', err);
    }
  }

  /** Idempotent. Closing checkpoints the WAL into the main file. */
  async close(): Promise<void> {
    const db = this.#db;
    if (!db) return;
    this.#db = null;
    this.#stmts.clear();
    try {
      db.close();
    } catch (err) {
      throw this.#error('cannot close the ledger', err);
    }
  }

  // ---- internals ----

  #open(): Database.Database {
    if (!this.#db) throw this.#error('the ledger is closed');
    return this.#db;
  }

  /** Prepared statements are cached by their SQL text: list() builds a few variants, each prepared once. */
  #stmt(sql: string): Database.Statement {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.#open().prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  #insert(e: LedgerEntry): void {
    const issuedAt = e.issuedAt.getTime();
    this.#insertCert.run(
      e.serial,
      e.issuerKeyId,
      e.subject,
      JSON.stringify(e.sans),
      e.identity,
      e.profile,
      e.notBefore.getTime(),
      e.notAfter.getTime(),
      e.fingerprint,
      e.pem,
      issuedAt,
    );
    // The issue event stays small (the row itself holds the rest): measured at a few percent of record's cost.
    this.#insertAudit.run(issuedAt, 'issue', e.serial, `{"issuerKeyId":${JSON.stringify(e.issuerKeyId)},"profile":"${e.profile}"}`);
  }

  #auditRow(type: string, subject: string | null, details: Record<string, unknown> | null): void {
    // bigint (e.g. a CRL number) is not JSON: write it as its decimal text rather than failing the transaction.
    const json = details === null ? null : JSON.stringify(details, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    this.#insertAudit.run(this.#now(), type, subject, json);
  }

  /** The row for a serial; without an issuer, a serial known under several issuers is an error, not a guess. */
  #find(serial: string, issuer: string | undefined, what: string): CertificateRow | undefined {
    try {
      if (issuer !== undefined) {
        return this.#stmt(`SELECT ${COLUMNS} FROM certificates WHERE serial = ? AND issuer_key_id = ?`).get(serial, issuer) as
          | CertificateRow
          | undefined;
      }
      const rows = this.#stmt(`SELECT ${COLUMNS} FROM certificates WHERE serial = ? ORDER BY id DESC`).all(
        serial,
      ) as CertificateRow[];
      if (rows.length > 1) {
        throw new MeshError(
          ErrorCodes.LEDGER,
          `${this.path}: cannot ${what} certificate serial ${serial}: the serial is known under ${rows.length} issuers (${rows
            .map((r) => r.issuer_key_id)
            .join(', ')}); name the issuer key id`,
          { subject: serial, details: { serial, issuerKeyIds: rows.map((r) => r.issuer_key_id) } },
        );
      }
      return rows[0];
    } catch (err) {
      throw this.#error(`cannot ${what} certificate serial ${serial}`, err);
    }
  }

  /**
   * Validates an entry and builds the LedgerEntry to return, as one fresh object: the caller's objects are not
   * kept, and what is returned is not shared with anything. One allocation per entry because recordMany is on the
   * hot path (copying twice cost a third of its throughput, mostly in GC). Messages are built only on failure.
   */
  #check(e: NewLedgerEntry, issuedAt: number, label: (serial: string) => string): LedgerEntry {
    const problem = invalidEntry(e);
    if (problem !== null) {
      const serial = e && typeof e.serial === 'string' ? normalizeHex(e.serial) : '';
      throw this.#error(`cannot ${label(serial)}: ${problem}`);
    }
    return {
      serial: normalizeHex(e.serial),
      issuerKeyId: normalizeHex(e.issuerKeyId),
      subject: e.subject,
      sans: e.sans.slice(),
      identity: e.identity,
      profile: e.profile,
      notBefore: new Date(e.notBefore.getTime()),
      notAfter: new Date(e.notAfter.getTime()),
      fingerprint: e.fingerprint,
      pem: e.pem,
      status: 'valid',
      issuedAt: new Date(issuedAt),
      revokedAt: null,
      revocationReason: null,
      invalidityDate: null,
    };
  }

  #ms(d: Date, action: string, field: string): number {
    const ms = d instanceof Date ? d.getTime() : NaN;
    if (!Number.isFinite(ms)) throw this.#error(`${action}: ${field} is not a valid date`);
    return ms;
  }

  #count(n: number, field: string): number {
    if (!Number.isSafeInteger(n) || n < 0) throw this.#error(`${field} must be a whole number ≥ 0, not ${String(n)}`);
    return n;
  }

  #now(): number {
    return this.#clock.now().getTime();
  }

  /** Wraps anything thrown into a LEDGER error naming the file; MeshErrors (NOT_FOUND, ours) pass through. */
  #error(what: string, err?: unknown): MeshError {
    if (err instanceof MeshError) return err;
    const code = (err as { code?: unknown } | undefined)?.code;
    return new MeshError(ErrorCodes.LEDGER, `${this.path}: ${what}${err === undefined ? '' : `: ${describeError(err)}`}`, {
      subject: this.path,
      ...(err === undefined ? {} : { cause: err }),
      ...(typeof code === 'string' ? { details: { sqlite: code } } : {}),
    });
  }
}

/** Opens `<dataDir>/ledger.db`, the ledger of a meshcert data dir. */
export function openLedger(dataDir: string, options: SqliteLedgerOptions = {}): SqliteLedger {
  return SqliteLedger.open(join(dataDir, 'ledger.db'), options);
}

class BatchEntryError extends Error {
  constructor(
    readonly index: number,
    readonly entry: NewLedgerEntry,
    override readonly cause: unknown,
  ) {
    super(describeError(cause));
  }
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * SQLite treats some very short files as empty and would turn them into a database, overwriting whatever they held:
 * check the header ourselves so that a file that is not ours is refused, never rewritten. An empty file is fine
 * (we may have just created it).
 */
function checkHeader(file: string, fail: (what: string, err?: unknown) => MeshError): void {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // read-only open reports the missing file
    throw fail('cannot read the ledger file', err);
  }
  try {
    const head = Buffer.alloc(SQLITE_MAGIC.length);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n > 0 && (n < head.length || !head.equals(SQLITE_MAGIC))) {
      throw fail('not a meshcert ledger (not an SQLite database)');
    }
  } catch (err) {
    throw fail('cannot read the ledger file', err);
  } finally {
    closeSync(fd);
  }
}

/** Whether a new revocation reason replaces the stored one (see SqliteLedger.revoke). */
function supersedes(requested: RevocationReason, stored: RevocationReason): boolean {
  if (requested === stored) return false;
  if (requested === 'keyCompromise') return true;
  return stored === 'certificateHold' && requested !== 'certificateHold';
}

function normalizeHex(s: string): string {
  return String(s).trim().toLowerCase();
}

/** Why an entry cannot be recorded, or null when it can. */
function invalidEntry(e: NewLedgerEntry): string | null {
  if (!e || typeof e !== 'object') return 'not a ledger entry';
  if (typeof e.serial !== 'string' || !HEX.test(normalizeHex(e.serial))) return `serial "${String(e?.serial)}" is not hex`;
  if (typeof e.issuerKeyId !== 'string' || normalizeHex(e.issuerKeyId) === '') return 'the issuer key id is empty';
  if (typeof e.subject !== 'string') return 'subject is not text';
  if (!Array.isArray(e.sans) || !e.sans.every((x) => typeof x === 'string')) return 'sans must be an array of strings';
  if (e.identity !== null && typeof e.identity !== 'string') return 'identity must be text or null';
  if (!PROFILES.has(e.profile)) return `profile "${String(e.profile)}" is not one of ${CERTIFICATE_PROFILES.join(', ')}`;
  const notBefore = e.notBefore instanceof Date ? e.notBefore.getTime() : NaN;
  const notAfter = e.notAfter instanceof Date ? e.notAfter.getTime() : NaN;
  if (!Number.isFinite(notBefore)) return 'notBefore is not a valid date';
  if (!Number.isFinite(notAfter)) return 'notAfter is not a valid date';
  if (notAfter < notBefore) return 'notAfter is before notBefore';
  if (typeof e.fingerprint !== 'string' || typeof e.pem !== 'string') return 'fingerprint and pem must be text';
  return null;
}

function toEntry(r: CertificateRow): LedgerEntry {
  return {
    serial: r.serial,
    issuerKeyId: r.issuer_key_id,
    subject: r.subject,
    sans: JSON.parse(r.sans) as string[],
    identity: r.identity,
    profile: r.profile as CertificateProfile,
    notBefore: new Date(r.not_before),
    notAfter: new Date(r.not_after),
    fingerprint: r.fingerprint,
    pem: r.pem,
    status: r.status as 'valid' | 'revoked',
    issuedAt: new Date(r.issued_at),
    revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
    revocationReason: r.revocation_reason as RevocationReason | null,
    invalidityDate: r.invalidity_date === null ? null : new Date(r.invalidity_date),
  };
}
