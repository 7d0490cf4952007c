import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, ManualClock, isMeshError } from '../core/index.js';
import { BatchingLedger } from './batching-ledger.js';
import { SqliteLedger, openLedger, type Ledger, type LedgerEntry, type NewLedgerEntry } from './index.js';

const T0 = Date.parse('2025-03-01T12:00:00.000Z');
const DAY = 86_400_000;

function entry(n: number, over: Partial<NewLedgerEntry> = {}): NewLedgerEntry {
  return {
    serial: (0x5e000000 + n).toString(16),
    issuerKeyId: 'aa01',
    subject: '',
    sans: [`URI:spiffe://cluster.local/ns/a/sa/w${n}`],
    identity: `spiffe://cluster.local/ns/a/sa/w${n}`,
    profile: 'svid',
    notBefore: new Date(T0 - 60_000),
    notAfter: new Date(T0 + DAY),
    fingerprint: 'cd'.repeat(32),
    pem: `-----BEGIN CERTIFICATE-----\nMII${n}\n-----END CERTIFICATE-----\n`,
    ...over,
  };
}

/** A real SQLite ledger in a fresh folder, with every recordMany/record call counted. */
async function withLedger(fn: (ledger: SqliteLedger, calls: { many: number[]; one: number }, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshcert-batching-'));
  const ledger = openLedger(dir, { clock: new ManualClock(T0) });
  const calls = { many: [] as number[], one: 0 };
  const many = ledger.recordMany.bind(ledger);
  const one = ledger.record.bind(ledger);
  ledger.recordMany = (entries) => {
    calls.many.push(entries.length);
    return many(entries);
  };
  ledger.record = (e) => {
    calls.one++;
    return one(e);
  };
  try {
    await fn(ledger, calls, dir);
  } finally {
    await ledger.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function ledgerError(code: string, ...parts: string[]) {
  return (err: unknown): boolean => {
    assert.ok(isMeshError(err), `expected a MeshError, got ${String(err)}`);
    assert.equal(err.code, code);
    for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should mention "${p}"`);
    return true;
  };
}

test('concurrent record() calls in one turn become one transaction; each caller gets its own stored entry', async () => {
  await withLedger(async (inner, calls) => {
    const ledger = new BatchingLedger(inner);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => ledger.record(entry(i))));
    assert.deepEqual(calls.many, [50]);
    assert.equal(calls.one, 0);
    results.forEach((r, i) => {
      assert.equal(r.serial, entry(i).serial);
      assert.equal(r.identity, entry(i).identity);
      assert.equal(r.status, 'valid');
    });
    assert.equal((await inner.counts()).total, 50);
    assert.deepEqual(ledger.stats, { batches: 1, entries: 50, largestBatch: 50, failedBatches: 0, retriedEntries: 0 });
  });
});

test('a promise resolves only after its row is committed', async () => {
  await withLedger(async (inner) => {
    const ledger = new BatchingLedger(inner);
    const seen: Array<LedgerEntry | null> = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        ledger.record(entry(i)).then(async (e) => {
          // Read back through the wrapped ledger the moment the caller is told: the row must be there.
          seen.push(await inner.get(e.serial, e.issuerKeyId));
        }),
      ),
    );
    assert.equal(seen.length, 20);
    assert.ok(seen.every((row) => row !== null && row.status === 'valid'));
  });

  // With a backend whose commit takes time, nobody is resolved before the commit finishes.
  let release!: () => void;
  const committed: string[] = [];
  const slow = fakeLedger({
    async recordMany(entries) {
      await new Promise<void>((r) => (release = r));
      committed.push(...entries.map((e) => e.serial));
      return entries.map(stored);
    },
  });
  const ledger = new BatchingLedger(slow);
  let resolved = 0;
  const all = Promise.all([1, 2, 3].map((n) => ledger.record(entry(n)).then(() => resolved++)));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(resolved, 0);
  assert.equal(committed.length, 0);
  release();
  await all;
  assert.equal(resolved, 3);
  assert.equal(committed.length, 3);
});

test('maxBatch caps a transaction; a full batch commits without waiting for the turn to end', async () => {
  await withLedger(async (inner, calls) => {
    const ledger = new BatchingLedger(inner, { maxBatch: 4 });
    const all = Promise.all(Array.from({ length: 10 }, (_, i) => ledger.record(entry(i))));
    // The fourth call filled a batch: it was handed to the ledger at once, in this very turn.
    assert.deepEqual(calls.many, [4]);
    await all;
    assert.deepEqual(calls.many, [4, 4, 2]);
    assert.equal((await inner.counts()).total, 10);
    assert.equal(ledger.stats.largestBatch, 4);
  });
  assert.throws(() => new BatchingLedger(fakeLedger({}), { maxBatch: 0 }), ledgerError(ErrorCodes.INVALID_ARGUMENT, 'maxBatch'));
  assert.throws(() => new BatchingLedger(fakeLedger({}), { maxBatch: 1.5 }), ledgerError(ErrorCodes.INVALID_ARGUMENT, 'maxBatch'));
});

test('one bad entry fails only its own caller: the batch is retried entry by entry', async () => {
  await withLedger(async (inner, calls) => {
    await inner.record(entry(3)); // serial 3 is taken: recording it again is a duplicate
    const ledger = new BatchingLedger(inner);
    const outcomes = await Promise.allSettled([
      ledger.record(entry(1)),
      ledger.record(entry(2)),
      ledger.record(entry(3)),
      ledger.record(entry(4, { serial: 'not-hex' })),
      ledger.record(entry(5)),
    ]);
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled'],
    );
    // Each caller gets the error of its own entry, as record() alone would give it.
    ledgerError(ErrorCodes.LEDGER, 'serial 5e000003')((outcomes[2] as PromiseRejectedResult).reason);
    ledgerError(ErrorCodes.LEDGER, 'not hex')((outcomes[3] as PromiseRejectedResult).reason);
    assert.deepEqual(calls.many, [5]);
    assert.equal(calls.one, 1 + 5); // the setup row, then the five retried alone
    const rows = await inner.list();
    assert.deepEqual(rows.map((r) => r.serial).sort(), ['5e000001', '5e000002', '5e000003', '5e000005']);
    assert.equal(ledger.stats.failedBatches, 1);
    assert.equal(ledger.stats.retriedEntries, 5);
  });
});

test('two entries with the same serial in one batch: the first is recorded, the second fails', async () => {
  await withLedger(async (inner) => {
    const ledger = new BatchingLedger(inner);
    const [a, b] = await Promise.allSettled([ledger.record(entry(7)), ledger.record(entry(7, { identity: 'other' }))]);
    assert.equal(a!.status, 'fulfilled');
    assert.equal(b!.status, 'rejected');
    const row = await inner.get(entry(7).serial);
    assert.equal(row?.identity, entry(7).identity);
  });
});

test('a whole-batch failure (e.g. a lock timeout) does not fail entries that succeed alone; a dead backend fails them all', async () => {
  let attempts = 0;
  const flaky = fakeLedger({
    async recordMany() {
      throw new Error('SQLITE_BUSY: database is locked');
    },
    async record(e) {
      attempts++;
      return stored(e);
    },
  });
  const ledger = new BatchingLedger(flaky);
  const results = await Promise.all([1, 2, 3].map((n) => ledger.record(entry(n))));
  assert.deepEqual(
    results.map((r) => r.serial),
    [1, 2, 3].map((n) => entry(n).serial),
  );
  assert.equal(attempts, 3);

  const dead = new BatchingLedger(
    fakeLedger({
      async recordMany() {
        throw new Error('connection lost');
      },
      async record() {
        throw new Error('connection lost');
      },
    }),
  );
  const outcomes = await Promise.allSettled([1, 2, 3].map((n) => dead.record(entry(n))));
  assert.ok(outcomes.every((o) => o.status === 'rejected' && /connection lost/.test(String(o.reason))));
  // A batch of one is not retried: its error is final.
  await assert.rejects(dead.record(entry(9)), /connection lost/);
});

test('a steady stream of records still lets timers and I/O run between batches', async () => {
  await withLedger(async (inner) => {
    const ledger = new BatchingLedger(inner);
    let finished = false;
    let ticksDuringWork = 0;
    const timer = setInterval(() => {
      if (!finished) ticksDuringWork++;
    }, 0);
    try {
      // 16 workers that record back to back, as concurrent issuance requests do.
      await Promise.all(
        Array.from({ length: 16 }, async (_, w) => {
          for (let i = 0; i < 100; i++) await ledger.record(entry(w * 1000 + i));
        }),
      );
    } finally {
      finished = true;
      clearInterval(timer);
    }
    assert.equal((await inner.counts()).total, 1600);
    assert.ok(ticksDuringWork > 0, 'the batching loop starved the event loop');
    assert.ok(ledger.stats.batches <= 100 + 5, `expected ~100 batches of 16, got ${ledger.stats.batches}`);
  });
});

test('close() commits what is pending before closing; other methods reach the wrapped ledger', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshcert-batching-'));
  try {
    const clock = new ManualClock(T0);
    const ledger = new BatchingLedger(openLedger(dir, { clock }));
    const pending = Array.from({ length: 30 }, (_, i) => ledger.record(entry(i)));
    assert.equal((await ledger.get(entry(0).serial)), null, 'nothing committed yet in this turn');
    const revoked = pending[0]!.then(() => ledger.revoke(entry(0).serial, 'keyCompromise', new Date(T0)));
    assert.equal((await revoked).alreadyRevoked, false);
    assert.equal((await ledger.list({ status: 'revoked' })).length, 1);
    assert.equal((await ledger.listRevoked('aa01')).length, 1);
    assert.equal(await ledger.nextCrlNumber('aa01'), 1n);
    assert.equal(await ledger.consumeToken('bootstrap:sha256:ab', new Date(T0)), true);
    assert.equal(await ledger.consumeToken('bootstrap:sha256:ab', new Date(T0)), false);
    await ledger.audit({ type: 'test', subject: 'x' });
    assert.equal((await ledger.auditEvents(1))[0]?.type, 'test');
    const many = await ledger.recordMany([entry(100), entry(101)]);
    assert.equal(many.length, 2);
    await ledger.close();
    await Promise.all(pending);
    await assert.rejects(ledger.record(entry(999)), ledgerError(ErrorCodes.LEDGER, 'closed'));

    const reopened = SqliteLedger.open(join(dir, 'ledger.db'), { readonly: true });
    try {
      assert.deepEqual(await reopened.counts(), { total: 32, valid: 31, revoked: 1 });
    } finally {
      await reopened.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function stored(e: NewLedgerEntry): LedgerEntry {
  return { ...e, status: 'valid', issuedAt: new Date(T0), revokedAt: null, revocationReason: null, invalidityDate: null };
}

/** A Ledger whose methods throw unless given: for backends that fail or stall on purpose. */
function fakeLedger(methods: Partial<Ledger>): Ledger {
  const missing = (name: string) => async (): Promise<never> => {
    throw new Error(`${name} not expected`);
  };
  return {
    record: missing('record'),
    recordMany: missing('recordMany'),
    get: missing('get'),
    list: missing('list'),
    revoke: missing('revoke'),
    listRevoked: missing('listRevoked'),
    nextCrlNumber: missing('nextCrlNumber'),
    consumeToken: missing('consumeToken'),
    audit: missing('audit'),
    auditEvents: missing('auditEvents'),
    counts: missing('counts'),
    close: async () => {},
    ...methods,
  };
}
