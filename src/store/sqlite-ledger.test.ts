import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ErrorCodes, ManualClock, isMeshError } from '../core/index.js';
import { SqliteLedger, openLedger, type NewLedgerEntry } from './index.js';

const T0 = Date.parse('2025-03-01T12:00:00.123Z');
const DAY = 86_400_000;

/** Each test gets its own folder, removed afterwards even when the test fails. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshcert-ledger-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function withLedger(fn: (ledger: SqliteLedger, clock: ManualClock, dir: string) => Promise<void>): Promise<void> {
  await withDir(async (dir) => {
    const clock = new ManualClock(T0);
    const ledger = openLedger(dir, { clock });
    try {
      await fn(ledger, clock, dir);
    } finally {
      await ledger.close();
    }
  });
}

function entry(n: number, over: Partial<NewLedgerEntry> = {}): NewLedgerEntry {
  const serial = (0x1f3a0000 + n).toString(16);
  return {
    serial,
    issuerKeyId: 'aa01',
    subject: `CN=w${n},O=mesh`,
    sans: [`URI:spiffe://cluster.local/ns/a/sa/w${n}`, `DNS:w${n}.a.svc`, 'IP:10.0.0.1'],
    identity: `spiffe://cluster.local/ns/a/sa/w${n}`,
    profile: 'svid',
    notBefore: new Date(T0 - 60_000),
    notAfter: new Date(T0 + DAY),
    fingerprint: 'ab'.repeat(32),
    pem: `-----BEGIN CERTIFICATE-----\nMII${n}\n-----END CERTIFICATE-----`,
    ...over,
  };
}

function isLedgerError(code: string, ...parts: string[]) {
  return (err: unknown): boolean => {
    assert.ok(isMeshError(err), `expected a MeshError, got ${String(err)}`);
    assert.equal(err.code, code);
    for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should mention "${p}"`);
    return true;
  };
}

test('record and get round-trip every field, dates to the millisecond', async () => {
  await withLedger(async (ledger) => {
    const e = entry(1, { notBefore: new Date(T0 - 1), notAfter: new Date(T0 + 999), identity: null, profile: 'server' });
    const recorded = await ledger.record(e);
    const expected = {
      ...e,
      status: 'valid',
      issuedAt: new Date(T0),
      revokedAt: null,
      revocationReason: null,
      invalidityDate: null,
    };
    assert.deepEqual(recorded, expected);
    assert.deepEqual(await ledger.get(e.serial, 'aa01'), expected);
    assert.deepEqual(await ledger.get(e.serial), expected);
    // Serials and issuer ids are lowercased defensively on the way in and on lookups.
    assert.deepEqual(await ledger.get(e.serial.toUpperCase(), 'AA01'), expected);
    const upper = await ledger.record(entry(2, { serial: 'ABCDEF', issuerKeyId: 'BB02' }));
    assert.equal(upper.serial, 'abcdef');
    assert.equal((await ledger.get('abcdef', 'bb02'))?.issuerKeyId, 'bb02');
    assert.equal(await ledger.get('ffff'), null);
    assert.equal(await ledger.get(e.serial, 'cc03'), null);
    // The returned entry is a copy: changing it does not change the ledger.
    recorded.sans.push('DNS:evil');
    assert.deepEqual((await ledger.get(e.serial))?.sans, e.sans);
  });
});

test('a duplicate serial under the same issuer is a LEDGER error and leaves the first row unchanged', async () => {
  await withLedger(async (ledger, clock, dir) => {
    const first = await ledger.record(entry(1));
    clock.advance(1000);
    await assert.rejects(
      ledger.record(entry(1, { subject: 'CN=other', pem: 'other' })),
      isLedgerError(ErrorCodes.LEDGER, join(dir, 'ledger.db'), `serial ${first.serial}`, 'UNIQUE'),
    );
    assert.deepEqual(await ledger.get(first.serial, 'aa01'), first);
    assert.deepEqual(await ledger.counts(), { total: 1, valid: 1, revoked: 0 });
    // No audit event for the failed attempt: the transaction rolled back both rows.
    assert.equal((await ledger.auditEvents()).filter((a) => a.type === 'issue').length, 1);

    // The same serial from another issuer (a CA rotation) is a different certificate...
    await ledger.record(entry(1, { issuerKeyId: 'bb02' }));
    assert.equal((await ledger.get(first.serial, 'bb02'))?.issuerKeyId, 'bb02');
    // ...and then a lookup without the issuer is ambiguous, never a guess.
    await assert.rejects(ledger.get(first.serial), isLedgerError(ErrorCodes.LEDGER, 'aa01', 'bb02', 'issuer'));
    await assert.rejects(ledger.revoke(first.serial, 'superseded', new Date(T0)), isLedgerError(ErrorCodes.LEDGER, 'issuer'));
  });
});

test('bad input is refused before anything is written', async () => {
  await withLedger(async (ledger) => {
    await assert.rejects(ledger.record(entry(1, { serial: 'xyz' })), isLedgerError(ErrorCodes.LEDGER, 'not hex'));
    await assert.rejects(ledger.record(entry(1, { notAfter: new Date(NaN) })), isLedgerError(ErrorCodes.LEDGER, 'notAfter'));
    await assert.rejects(
      ledger.record(entry(1, { notAfter: new Date(T0 - DAY) })),
      isLedgerError(ErrorCodes.LEDGER, 'notAfter is before notBefore'),
    );
    await assert.rejects(ledger.record(entry(1, { profile: 'bogus' as never })), isLedgerError(ErrorCodes.LEDGER, 'profile'));
    await assert.rejects(ledger.record(entry(1, { issuerKeyId: '' })), isLedgerError(ErrorCodes.LEDGER, 'issuer'));
    assert.deepEqual(await ledger.counts(), { total: 0, valid: 0, revoked: 0 });
  });
});

test('recordMany is one transaction: one bad entry and none is recorded', async () => {
  await withLedger(async (ledger) => {
    await ledger.record(entry(3));
    // The third entry collides with the stored one: SQLite fails mid-batch, everything rolls back.
    await assert.rejects(
      ledger.recordMany([entry(1), entry(2), entry(3), entry(4)]),
      isLedgerError(ErrorCodes.LEDGER, 'none recorded', 'certificate 3', entry(3).serial, 'UNIQUE'),
    );
    // A duplicate inside the batch itself.
    await assert.rejects(ledger.recordMany([entry(5), entry(5)]), isLedgerError(ErrorCodes.LEDGER, 'certificate 2'));
    // Validation failures are caught before the transaction starts.
    await assert.rejects(ledger.recordMany([entry(6), entry(7, { notBefore: new Date('nope') })]), isLedgerError(ErrorCodes.LEDGER));
    assert.deepEqual(await ledger.counts(), { total: 1, valid: 1, revoked: 0 });
    assert.equal((await ledger.auditEvents()).length, 1);

    const ok = await ledger.recordMany([entry(1), entry(2)]);
    assert.deepEqual(
      ok.map((e) => e.serial),
      [entry(1).serial, entry(2).serial],
    );
    assert.deepEqual(await ledger.counts(), { total: 3, valid: 3, revoked: 0 });
    assert.deepEqual(await ledger.recordMany([]), []);
  });
});

test('list filters, orders newest first, limits and skips', async () => {
  await withLedger(async (ledger, clock) => {
    await ledger.record(entry(1, { identity: 'spiffe://x/a' }));
    clock.advance(1000);
    await ledger.record(entry(2, { identity: 'spiffe://x/b', issuerKeyId: 'bb02', notAfter: new Date(T0 + 2 * DAY) }));
    clock.advance(1000);
    // A batch shares one issuedAt; insertion order breaks the tie.
    await ledger.recordMany([entry(3, { identity: 'spiffe://x/a' }), entry(4, { notAfter: new Date(T0 - 1) })]);
    await ledger.revoke(entry(1).serial, 'superseded', new Date(T0 + 5000));

    const serials = (q?: Parameters<typeof ledger.list>[0]) => ledger.list(q).then((l) => l.map((e) => e.serial));
    const s = [1, 2, 3, 4].map((n) => entry(n).serial);
    assert.deepEqual(await serials(), [s[3], s[2], s[1], s[0]]);
    assert.deepEqual(await serials({ status: 'revoked' }), [s[0]]);
    assert.deepEqual(await serials({ status: 'valid' }), [s[3], s[2], s[1]]);
    assert.deepEqual(await serials({ identity: 'spiffe://x/a' }), [s[2], s[0]]);
    assert.deepEqual(await serials({ issuerKeyId: 'BB02' }), [s[1]]);
    assert.deepEqual(await serials({ identity: 'spiffe://x/a', status: 'valid' }), [s[2]]);
    assert.deepEqual(await serials({ limit: 2 }), [s[3], s[2]]);
    assert.deepEqual(await serials({ limit: 2, offset: 1 }), [s[2], s[1]]);
    assert.deepEqual(await serials({ offset: 3 }), [s[0]]);
    assert.deepEqual(await serials({ limit: 0 }), []);
    // includeExpiredBefore: certificates whose notAfter is before the instant are left out.
    assert.deepEqual(await serials({ includeExpiredBefore: new Date(T0) }), [s[2], s[1], s[0]]);
    assert.deepEqual(await serials({ includeExpiredBefore: new Date(T0 + DAY + 1) }), [s[1]]);
    await assert.rejects(ledger.list({ limit: -1 }), isLedgerError(ErrorCodes.LEDGER, 'limit'));
  });
});

test('revoke records time, reason and invalidity date, with an audit event', async () => {
  await withLedger(async (ledger, clock) => {
    const e = await ledger.record(entry(1));
    clock.advance(10_000);
    const at = new Date(T0 + 5_001);
    const invalid = new Date(T0 - 3_333);
    const res = await ledger.revoke(e.serial.toUpperCase(), 'keyCompromise', at, invalid);
    assert.equal(res.alreadyRevoked, false);
    const expected = { ...e, status: 'revoked', revokedAt: at, revocationReason: 'keyCompromise', invalidityDate: invalid };
    assert.deepEqual(res.entry, expected);
    assert.deepEqual(await ledger.get(e.serial), expected);
    assert.deepEqual(await ledger.counts(), { total: 1, valid: 0, revoked: 1 });

    const [ev] = await ledger.auditEvents(1);
    assert.equal(ev?.type, 'revoke');
    assert.equal(ev?.subject, e.serial);
    assert.deepEqual(ev?.at, new Date(T0 + 10_000));
    assert.equal(ev?.details?.reason, 'keyCompromise');
    assert.equal(ev?.details?.revokedAt, at.toISOString());
    assert.equal(ev?.details?.invalidityDate, invalid.toISOString());

    // Without an invalidity date, it stays null; with the issuer named, the right row is revoked.
    const f = await ledger.record(entry(2, { issuerKeyId: 'bb02' }));
    const r2 = await ledger.revoke(f.serial, 'cessationOfOperation', at, undefined, 'bb02');
    assert.equal(r2.entry.invalidityDate, null);
    assert.equal(r2.entry.revocationReason, 'cessationOfOperation');
  });
});

test('revoking twice is harmless; keyCompromise and a released hold may change the reason', async () => {
  await withLedger(async (ledger, clock) => {
    const e = await ledger.record(entry(1));
    const first = await ledger.revoke(e.serial, 'superseded', new Date(T0 + 1000));
    const events = (await ledger.auditEvents()).length;
    clock.advance(5000);

    const again = await ledger.revoke(e.serial, 'affiliationChanged', new Date(T0 + 9000), new Date(T0));
    assert.equal(again.alreadyRevoked, true);
    assert.deepEqual(again.entry, first.entry);
    assert.deepEqual(await ledger.get(e.serial), first.entry);
    assert.equal((await ledger.auditEvents()).length, events, 'a no-op repeat writes nothing');

    // keyCompromise upgrades the reason; the original revocation time stays.
    const upgraded = await ledger.revoke(e.serial, 'keyCompromise', new Date(T0 + 9000), new Date(T0 - 500));
    assert.equal(upgraded.alreadyRevoked, true);
    assert.equal(upgraded.entry.revocationReason, 'keyCompromise');
    assert.deepEqual(upgraded.entry.revokedAt, new Date(T0 + 1000));
    assert.deepEqual(upgraded.entry.invalidityDate, new Date(T0 - 500));
    assert.deepEqual(await ledger.get(e.serial), upgraded.entry);
    const [ev] = await ledger.auditEvents(1);
    assert.equal(ev?.type, 'revoke-reason-changed');
    assert.equal(ev?.details?.from, 'superseded');
    assert.equal(ev?.details?.to, 'keyCompromise');
    // Nothing replaces keyCompromise.
    const after = await ledger.revoke(e.serial, 'certificateHold', new Date(T0 + 9999));
    assert.deepEqual(after, { entry: upgraded.entry, alreadyRevoked: true });

    // A hold becomes a final revocation.
    const h = await ledger.record(entry(2));
    await ledger.revoke(h.serial, 'certificateHold', new Date(T0 + 2000));
    const final = await ledger.revoke(h.serial, 'cessationOfOperation', new Date(T0 + 3000));
    assert.equal(final.entry.revocationReason, 'cessationOfOperation');
    assert.deepEqual(final.entry.revokedAt, new Date(T0 + 2000));
  });
});

test('revoking an unknown serial is NOT_FOUND naming it; nonsense reasons are refused', async () => {
  await withLedger(async (ledger) => {
    await assert.rejects(ledger.revoke('dead01', 'keyCompromise', new Date(T0)), isLedgerError(ErrorCodes.NOT_FOUND, 'dead01'));
    const e = await ledger.record(entry(1));
    await assert.rejects(
      ledger.revoke(e.serial, 'keyCompromise', new Date(T0), undefined, 'bb02'),
      isLedgerError(ErrorCodes.NOT_FOUND, e.serial, 'bb02'),
    );
    await assert.rejects(ledger.revoke(e.serial, 'removeFromCRL', new Date(T0)), isLedgerError(ErrorCodes.LEDGER, 'removeFromCRL'));
    await assert.rejects(ledger.revoke(e.serial, 'nope' as never, new Date(T0)), isLedgerError(ErrorCodes.LEDGER, 'nope'));
    await assert.rejects(ledger.revoke(e.serial, 'superseded', new Date(NaN)), isLedgerError(ErrorCodes.LEDGER, 'revocation time'));
    assert.equal((await ledger.get(e.serial))?.status, 'valid');
  });
});

test('listRevoked filters by issuer and leaves out certificates expired before a given instant', async () => {
  await withLedger(async (ledger) => {
    await ledger.recordMany([
      entry(1, { notAfter: new Date(T0 + DAY) }),
      entry(2, { notAfter: new Date(T0 - 1) }),
      entry(3, { notAfter: new Date(T0 + 2 * DAY), issuerKeyId: 'bb02' }),
      entry(4),
    ]);
    await ledger.revoke(entry(2).serial, 'keyCompromise', new Date(T0 - 5000));
    await ledger.revoke(entry(1).serial, 'superseded', new Date(T0 + 1000));
    await ledger.revoke(entry(3).serial, 'superseded', new Date(T0 + 500), undefined, 'bb02');
    const serials = (issuer?: string, at?: Date) => ledger.listRevoked(issuer, at).then((l) => l.map((e) => e.serial));
    const s = [1, 2, 3].map((n) => entry(n).serial);
    assert.deepEqual(await serials(), [s[1], s[2], s[0]], 'ordered by revocation time');
    assert.deepEqual(await serials('aa01'), [s[1], s[0]]);
    assert.deepEqual(await serials('aa01', new Date(T0)), [s[0]]);
    assert.deepEqual(await serials('aa01', new Date(T0 - 1)), [s[1], s[0]], 'notAfter equal to the instant is kept');
    assert.deepEqual(await serials(undefined, new Date(T0 + DAY + 1)), [s[2]]);
    assert.deepEqual(await serials('cc03'), []);
    const [r] = await ledger.listRevoked('bb02');
    assert.equal(r?.revocationReason, 'superseded');
    assert.deepEqual(r?.revokedAt, new Date(T0 + 500));
  });
});

test('CRL numbers start at 1, increase per issuer, survive a reopen, and go past 64 bits', async () => {
  await withDir(async (dir) => {
    let ledger = openLedger(dir);
    assert.equal(await ledger.nextCrlNumber('aa01'), 1n);
    assert.equal(await ledger.nextCrlNumber('aa01'), 2n);
    assert.equal(await ledger.nextCrlNumber('bb02'), 1n);
    assert.equal(await ledger.nextCrlNumber('AA01'), 3n);
    await ledger.close();
    ledger = openLedger(dir);
    assert.equal(await ledger.nextCrlNumber('aa01'), 4n);
    assert.equal(await ledger.nextCrlNumber('bb02'), 2n);
    await assert.rejects(ledger.nextCrlNumber(''), isLedgerError(ErrorCodes.LEDGER, 'empty'));
    // Two connections to one file (as two processes would have) never hand out the same number.
    const other = openLedger(dir);
    const seen = [];
    for (let i = 0; i < 10; i++) seen.push(await (i % 2 ? other : ledger).nextCrlNumber('aa01'));
    await other.close();
    assert.deepEqual(seen, Array.from({ length: 10 }, (_, i) => BigInt(5 + i)));
    await ledger.close();

    // RFC 5280 allows CRL numbers up to 20 octets: well past SQLite's INTEGER.
    const db = new Database(join(dir, 'ledger.db'));
    db.prepare("UPDATE crl_numbers SET last = ? WHERE issuer_key_id = 'aa01'").run((2n ** 64n).toString());
    db.close();
    ledger = openLedger(dir);
    assert.equal(await ledger.nextCrlNumber('aa01'), 2n ** 64n + 1n);
    assert.equal(await ledger.nextCrlNumber('bb02'), 3n);
    await ledger.close();
  });
});

test('audit events are stored with time, subject and details, newest first', async () => {
  await withLedger(async (ledger, clock) => {
    await ledger.record(entry(1));
    clock.advance(1234);
    await ledger.audit({ type: 'ca-rotate', subject: 'aa01', details: { from: 'aa01', to: 'bb02', crl: 7n, nested: { ok: true } } });
    clock.advance(1);
    await ledger.audit({ type: 'note' });
    const events = await ledger.auditEvents();
    assert.deepEqual(
      events.map((e) => e.type),
      ['note', 'ca-rotate', 'issue'],
    );
    assert.deepEqual(events[0], { id: events[0]!.id, at: new Date(T0 + 1235), type: 'note', subject: null, details: null });
    assert.deepEqual(events[1]?.details, { from: 'aa01', to: 'bb02', crl: '7', nested: { ok: true } });
    assert.deepEqual(events[1]?.at, new Date(T0 + 1234));
    assert.equal(events[2]?.subject, entry(1).serial);
    assert.deepEqual(events[2]?.details, { issuerKeyId: 'aa01', profile: 'svid' });
    assert.ok(events[0]!.id > events[1]!.id && events[1]!.id > events[2]!.id);
    assert.deepEqual(
      (await ledger.auditEvents(2)).map((e) => e.type),
      ['note', 'ca-rotate'],
    );
    await assert.rejects(ledger.audit({ type: '' }), isLedgerError(ErrorCodes.LEDGER, 'type'));
  });
});

test('the database file is created 0600 in a new folder', async () => {
  await withDir(async (dir) => {
    const data = join(dir, 'nested', 'data');
    const ledger = openLedger(data);
    await ledger.record(entry(1));
    assert.equal(statSync(join(data, 'ledger.db')).mode & 0o777, 0o600);
    // SQLite gives its WAL side file the main file's mode.
    if (existsSync(join(data, 'ledger.db-wal'))) assert.equal(statSync(join(data, 'ledger.db-wal')).mode & 0o777, 0o600);
    assert.equal(statSync(data).mode & 0o077, 0);
    await ledger.close();
    await ledger.close(); // idempotent
    await assert.rejects(ledger.counts(), isLedgerError(ErrorCodes.LEDGER, 'closed'));
  });
});

test('a garbage file, a foreign SQLite database or a newer schema gives a LEDGER error naming the file', async () => {
  await withDir(async (dir) => {
    const garbage = join(dir, 'garbage.db');
    writeFileSync(garbage, 'this is not a database, just text that goes on for a while. '.repeat(100));
    assert.throws(() => SqliteLedger.open(garbage), isLedgerError(ErrorCodes.LEDGER, garbage, 'not a meshcert ledger'));
    assert.throws(() => SqliteLedger.open(garbage, { readonly: true }), isLedgerError(ErrorCodes.LEDGER, garbage));
    const short = join(dir, 'short.db');
    writeFileSync(short, 'x');
    assert.throws(() => SqliteLedger.open(short), isLedgerError(ErrorCodes.LEDGER, short));

    const foreign = join(dir, 'foreign.db');
    const db = new Database(foreign);
    db.exec('CREATE TABLE t (x)');
    db.close();
    assert.throws(() => SqliteLedger.open(foreign), isLedgerError(ErrorCodes.LEDGER, foreign, 'not a meshcert ledger'));
    assert.throws(() => SqliteLedger.open(foreign, { readonly: true }), isLedgerError(ErrorCodes.LEDGER, 'not a meshcert ledger'));
    // Refused untouched: still its own tables, still in its own journal mode.
    const check = new Database(foreign, { readonly: true });
    assert.deepEqual(check.prepare('SELECT name FROM sqlite_master').pluck().all(), ['t']);
    assert.equal(check.pragma('journal_mode', { simple: true }), 'delete');
    check.close();

    const newer = join(dir, 'newer.db');
    (await SqliteLedger.open(newer).close());
    const n = new Database(newer);
    n.pragma('user_version = 99');
    n.close();
    assert.throws(() => SqliteLedger.open(newer), isLedgerError(ErrorCodes.LEDGER, newer, 'newer'));

    assert.throws(() => SqliteLedger.open(join(dir, 'missing.db'), { readonly: true }), isLedgerError(ErrorCodes.LEDGER, 'missing.db'));
  });
});

test('a read-only ledger reads, and refuses writes with a LEDGER error', async () => {
  await withDir(async (dir) => {
    const rw = openLedger(dir);
    await rw.record(entry(1));
    await rw.close();
    const ro = openLedger(dir, { readonly: true });
    try {
      assert.equal((await ro.get(entry(1).serial))?.serial, entry(1).serial);
      await assert.rejects(ro.record(entry(2)), isLedgerError(ErrorCodes.LEDGER, 'ledger.db', 'readonly'));
    } finally {
      await ro.close();
    }
  });
});

test('":memory:" gives a private in-memory ledger', async () => {
  const ledger = SqliteLedger.open(':memory:', { clock: new ManualClock(T0) });
  try {
    await ledger.record(entry(1));
    assert.equal((await ledger.get(entry(1).serial))?.issuedAt.getTime(), T0);
    assert.equal(await ledger.nextCrlNumber('aa01'), 1n);
  } finally {
    await ledger.close();
  }
});

test('throughput of recordMany and record (printed, not asserted)', async (t) => {
  await withDir(async (dir) => {
    const ledger = openLedger(dir);
    try {
      const pem = `-----BEGIN CERTIFICATE-----\n${'A'.repeat(64)}\n`.repeat(10) + '-----END CERTIFICATE-----';
      const make = (base: number, n: number) => Array.from({ length: n }, (_, i) => entry(base + i, { pem }));
      await ledger.recordMany(make(1_000_000, 200)); // warm up
      const batch = make(0, 5000);
      let t0 = performance.now();
      await ledger.recordMany(batch);
      const manyMs = performance.now() - t0;
      const singles = make(100_000, 5000);
      t0 = performance.now();
      for (const e of singles) await ledger.record(e);
      const oneMs = performance.now() - t0;
      const msg =
        `recordMany(5000): ${manyMs.toFixed(1)} ms, ${Math.round(5000 / (manyMs / 1000))} certificates/s; ` +
        `record x5000: ${oneMs.toFixed(1)} ms, ${Math.round(5000 / (oneMs / 1000))} certificates/s`;
      t.diagnostic(msg);
      console.log(`# ${msg}`);
      assert.equal((await ledger.counts()).total, 10_200);
    } finally {
      await ledger.close();
    }
  });
});

test('consumeToken: true the first time a one-time token id is used, false after, across connections and reopen', async () => {
  await withLedger(async (ledger, clock, dir) => {
    assert.equal(await ledger.consumeToken('bootstrap:sha256:ab12', clock.now()), true);
    assert.equal(await ledger.consumeToken('bootstrap:sha256:ab12', clock.now()), false);
    assert.equal(await ledger.consumeToken('bootstrap:sha256:cd34', clock.now()), true);
    // Another connection to the same file (another replica or process) sees the same state.
    const other = openLedger(dir, { clock });
    try {
      assert.equal(await other.consumeToken('bootstrap:sha256:ab12', clock.now()), false);
      assert.equal(await other.consumeToken('bootstrap:sha256:ef56', clock.now()), true);
    } finally {
      await other.close();
    }
    assert.equal(await ledger.consumeToken('bootstrap:sha256:ef56', clock.now()), false);
    // Concurrent attempts: exactly one wins.
    const results = await Promise.all(Array.from({ length: 8 }, () => ledger.consumeToken('race', clock.now())));
    assert.equal(results.filter(Boolean).length, 1);
    await assert.rejects(ledger.consumeToken('', clock.now()), isLedgerError(ErrorCodes.LEDGER, 'token id is empty'));
    await assert.rejects(ledger.consumeToken('x', new Date(NaN)), isLedgerError(ErrorCodes.LEDGER, 'not a valid date'));
  });
});

test('a schema-1 ledger is migrated in place and keeps its rows (consumed_tokens added)', async () => {
  await withDir(async (dir) => {
    const file = join(dir, 'ledger.db');
    const first = SqliteLedger.open(file);
    await first.record(entry(1));
    await first.close();
    // Roll the file back to what the first release wrote: schema 1, without the consumed_tokens table.
    const raw = new Database(file);
    raw.exec('DROP TABLE consumed_tokens');
    raw.pragma('user_version = 1');
    raw.close();
    const ro = () => SqliteLedger.open(file, { readonly: true });
    assert.throws(ro, isLedgerError(ErrorCodes.LEDGER, 'needs migrating'));
    const ledger = SqliteLedger.open(file);
    try {
      assert.equal((await ledger.get(entry(1).serial))?.serial, entry(1).serial);
      assert.equal(await ledger.consumeToken('t1', new Date(T0)), true);
      assert.equal(await ledger.consumeToken('t1', new Date(T0)), false);
    } finally {
      await ledger.close();
    }
  });
});
