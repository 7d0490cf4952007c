// kill -9 in the middle of a load of issuance: `meshcert serve` runs as a real process (from the sources, through
// tsx, as test/server/serve-cli.test.ts runs it), 16 callers keep CreateCertificate calls in flight, and the server
// is SIGKILLed once a couple of hundred certificates have come back. Then: the ledger opens cleanly (SQLite
// integrity_check ok), every certificate any client received is in it with the same fingerprint (and its
// csr-allowed audit event), and the server restarts on the same data dir and serves again.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { Client, Metadata, credentials, status as Status, type ServiceError } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { requestCertificate } from '../../src/agent/index.js';
import { Certificate } from '../../src/pki/index.js';
import { CREATE_CERTIFICATE_PATH, istioCaMethod, type IstioCertificateResponseMessage } from '../../src/server/index.js';
import { openLedger } from '../../src/store/index.js';
import { SERVER_NAME, makeCsr, tempDir, writeBootstrapTokens } from './fixtures.js';
import { spawnMeshcert, waitForOutput, type RunningMeshcert as Running } from '../helpers/meshcert-process.js';


const IDENTITY = 'spiffe://cluster.local/ns/load/sa/kill9';
const TOKEN = 'kill9-load-token-0123456789abcdef';
const IN_FLIGHT = 16;
const CHANNELS = 4;
const CSRS = 256;
/** Kill once this many certificates were received: somewhere in 100-200, so runs explore different moments. */
const KILL_AFTER = 100 + Math.floor(Math.random() * 101);
/** On a slow machine, kill after this long anyway (with at least MIN_RECEIVED received), to stay bounded. */
const LOAD_MS = 10_000;
const MIN_RECEIVED = 20;

function spawnServe(configFile: string, dataDir: string): Running {
  return spawnMeshcert(['serve', '--config', configFile, '--data-dir', dataDir, '--log-level', 'warn']);
}

const GRPC_LINE = /CA gRPC API \(istio\.v1\.auth\.IstioCertificateService\): (127\.0\.0\.1:\d+) \(TLS/;

async function waitForAddress(r: Running, timeoutMs = 20_000): Promise<string> {
  return (await waitForOutput(r, GRPC_LINE, timeoutMs))[1]!;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms);
    }),
  ]);
}

interface Received {
  serial: string;
  fingerprint: string;
  /** Received after SIGKILL was sent (the response was already on its way). */
  afterKill: boolean;
}

test('kill -9 during a load of issuance: every certificate a client received is in the ledger, which opens cleanly; the server serves again', { timeout: 90_000 }, async (t) => {
  const started = Date.now();
  const dir = tempDir('meshcert-kill9-');
  const dataDir = join(dir, 'data');
  const tokenFile = join(dir, 'tokens.yaml');
  // Not one-time: every call of the load uses it.
  writeBootstrapTokens(tokenFile, [{ name: 'load', token: TOKEN, identity: IDENTITY }]);
  const configFile = join(dir, 'serve.yaml');
  writeFileSync(
    configFile,
    stringify({
      trustDomain: 'cluster.local',
      grpc: { listen: '127.0.0.1:0', dnsNames: [SERVER_NAME, 'localhost'] },
      issuance: { defaultTtl: '1h', maxTtl: '2h' },
      auth: { bootstrapTokens: tokenFile },
      // No rateLimit section: off, so the load is limited by the server alone.
    }),
  );

  // Keys and CSRs beforehand (while the server starts): the load measures the server, not key generation.
  const server = spawnServe(configFile, dataDir);
  let second: Running | null = null;
  const clients: Client[] = [];
  try {
    const csrs: string[] = [];
    for (let i = 0; i < CSRS; i++) csrs.push((await makeCsr()).csrPem);
    const address = await waitForAddress(server);
    const rootPem = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');

    const method = istioCaMethod();
    let loadStarted = Date.now();
    const creds = credentials.createSsl(Buffer.from(rootPem));
    for (let i = 0; i < CHANNELS; i++) {
      // Distinct options so grpc-js does not share one subchannel between the clients.
      clients.push(new Client(address, creds, { 'grpc.ssl_target_name_override': SERVER_NAME, 'grpc.default_authority': SERVER_NAME, 'test.channel': i }));
    }
    const md = new Metadata();
    md.set('authorization', `Bearer ${TOKEN}`);

    const received: Received[] = [];
    const failures: { code: number; details: string; afterKill: boolean }[] = [];
    let killed = false;
    let killedAt = 0;
    let inFlightAtKill = 0;
    let inFlight = 0;
    let next = 0;

    const callOnce = (client: Client, csr: string): Promise<IstioCertificateResponseMessage> =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          CREATE_CERTIFICATE_PATH,
          (m: { csr: string; subjectId: string; validityDuration: number }) => Buffer.from(method.requestSerialize(m as never)),
          (b: Buffer) => method.responseDeserialize(b),
          { csr, subjectId: '', validityDuration: 600 },
          md,
          { deadline: new Date(Date.now() + 10_000) },
          (err: ServiceError | null, res?: IstioCertificateResponseMessage) => (err ? reject(err) : resolve(res!)),
        );
      });

    const kill = (): void => {
      if (killed) return;
      killed = true;
      killedAt = received.length;
      inFlightAtKill = inFlight;
      server.child.kill('SIGKILL');
    };

    const worker = async (w: number): Promise<void> => {
      const client = clients[w % CHANNELS]!;
      while (!killed) {
        const csr = csrs[next++ % CSRS]!;
        inFlight++;
        let answered = false;
        try {
          const res = await callOnce(client, csr);
          const leaf = Certificate.parse(res.certChain[0]!);
          received.push({ serial: leaf.serial, fingerprint: createHash('sha256').update(leaf.der).digest('hex'), afterKill: killed });
          answered = true;
        } catch (err) {
          const se = err as ServiceError;
          failures.push({ code: se.code, details: se.details ?? String(err), afterKill: killed });
          if (!killed) break; // a refusal before the kill is a failure of the test: stop loading
        } finally {
          inFlight--;
        }
        if (answered && (received.length >= KILL_AFTER || (Date.now() - loadStarted > LOAD_MS && received.length >= MIN_RECEIVED))) kill();
      }
    };

    // A safety net: whatever happens, the server is killed within 15 s of the load's start.
    loadStarted = Date.now();
    const safety = setTimeout(kill, 15_000);
    await withTimeout(Promise.all(Array.from({ length: IN_FLIGHT }, (_, w) => worker(w))), 30_000, 'the load');
    clearTimeout(safety);
    const loadMs = Date.now() - loadStarted;
    const exit = await withTimeout(server.exited, 10_000, 'the killed server');
    for (const c of clients) c.close();

    const beforeKill = failures.filter((f) => !f.afterKill);
    assert.deepEqual(beforeKill, [], `calls failed before the kill:\n${server.stderr()}`);
    assert.ok(killed, 'the server was killed');
    assert.equal(exit.signal, 'SIGKILL', `the server died of SIGKILL, not ${JSON.stringify(exit)}\n${server.stderr()}`);
    assert.ok(killedAt >= MIN_RECEIVED, `killed after only ${killedAt} certificates in ${loadMs} ms\n${server.stderr()}`);
    assert.ok(inFlightAtKill > 0, 'calls were in flight when the server was killed');
    // Calls cut by the kill end as UNAVAILABLE (or, rarely, with a reset stream as INTERNAL/CANCELLED).
    const cutCodes = new Set(failures.map((f) => Status[f.code] ?? String(f.code)));

    // 1. The ledger file is a sound SQLite database after the crash (WAL recovered on open).
    const ledgerFile = join(dataDir, 'ledger.db');
    const walBytes = existsSync(`${ledgerFile}-wal`) ? statSync(`${ledgerFile}-wal`).size : 0;
    const db = new Database(ledgerFile);
    try {
      assert.deepEqual(db.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
      assert.deepEqual(db.pragma('foreign_key_check'), []);
    } finally {
      db.close();
    }

    // 2. It opens as a ledger, and every certificate any client received is in it with the same fingerprint.
    const ledger = openLedger(dataDir);
    let inLedger: number;
    let issuedByServer: number;
    try {
      const entries = await ledger.list({ identity: IDENTITY });
      inLedger = entries.length;
      const byFingerprint = new Map(entries.map((e) => [e.fingerprint, e] as const));
      const missing = received.filter((r) => !byFingerprint.has(r.fingerprint));
      assert.deepEqual(missing, [], `${missing.length} of ${received.length} received certificates are missing from the ledger`);
      for (const r of received) {
        const e = byFingerprint.get(r.fingerprint)!;
        assert.equal(e.serial, r.serial);
        assert.equal(e.status, 'valid');
        assert.equal(createHash('sha256').update(Certificate.parse(e.pem).der).digest('hex'), r.fingerprint, `stored PEM of ${r.serial}`);
        assert.equal((await ledger.get(r.serial))?.fingerprint, r.fingerprint, `lookup of ${r.serial} by serial`);
      }
      // No serial twice in what the clients received, and none twice in the ledger.
      assert.equal(new Set(received.map((r) => r.serial)).size, received.length);
      assert.equal(new Set(entries.map((e) => e.serial)).size, entries.length);
      assert.ok(inLedger >= received.length, `${inLedger} in the ledger < ${received.length} received`);
      // The registration authority hands a certificate out only after its csr-allowed audit event is written.
      const audited = new Set(
        (await ledger.auditEvents(1_000_000))
          .filter((e) => e.type === 'csr-allowed' && e.subject === IDENTITY)
          .map((e) => (e.details?.granted as { serial?: string } | undefined)?.serial),
      );
      const unaudited = received.filter((r) => !audited.has(r.serial));
      assert.deepEqual(unaudited, [], `${unaudited.length} received certificates have no csr-allowed audit event`);
      issuedByServer = (await ledger.counts()).total;
    } finally {
      await ledger.close();
    }

    // 3. The server starts again on the same data dir (same CA, no new one) and serves.
    second = spawnServe(configFile, dataDir);
    const address2 = await waitForAddress(second);
    assert.doesNotMatch(second.stdout(), /created a new mesh CA/);
    assert.equal(readFileSync(join(dataDir, 'root-cert.pem'), 'utf8'), rootPem, 'the same trust bundle');
    const again = await requestCertificate({ address: address2, rootCertPem: rootPem, serverName: SERVER_NAME, csrPem: csrs[0]!, validitySeconds: 600, bearerToken: TOKEN, timeoutMs: 10_000 });
    const leaf = Certificate.parse(again.certChain[0]!);
    assert.deepEqual(leaf.spiffeIds, [IDENTITY]);
    assert.ok(!received.some((r) => r.serial === leaf.serial), 'a fresh serial after the restart');
    second.child.kill('SIGTERM');
    const stopped = await withTimeout(second.exited, 10_000, 'the restarted server on SIGTERM');
    assert.equal(stopped.code, 0, `exit ${JSON.stringify(stopped)}\n${second.stderr()}`);
    const after = openLedger(dataDir);
    try {
      assert.equal((await after.get(leaf.serial))?.fingerprint, leaf.fingerprint256);
    } finally {
      await after.close();
    }

    const afterKill = received.filter((r) => r.afterKill).length;
    t.diagnostic(
      `kill after ${killedAt} received (target ${KILL_AFTER}), ${inFlightAtKill} calls in flight; ` +
        `${received.length} received in all (${afterKill} after SIGKILL was sent), ${inLedger} of this identity in the ledger ` +
        `(${inLedger - received.length} recorded but never received), ${issuedByServer} ledger entries with the serving certificate; ` +
        `${failures.length} calls cut (${[...cutCodes].join(', ') || 'none'}); WAL left by the crash ${walBytes} bytes; load ${loadMs} ms, ` +
        `${Math.round((killedAt / loadMs) * 1000)} certificates/s; whole test ${Date.now() - started} ms`,
    );
  } finally {
    for (const c of clients) c.close();
    for (const r of [server, second]) {
      if (r && r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
