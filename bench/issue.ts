/**
 * `npm run bench -- issue`: how fast the CA issues, beside the raw ECDSA P-256 signature rate of this machine
 * (`openssl speed -seconds 3 ecdsap256`, measured in the same run). One process, one EC P-256 CA:
 *   (a) SVIDs built and signed per second for a given public key, DER out;
 *   (b) the whole CSR pipeline per second: PEM CSR in → Csr.parse + verify → planCertificate → build → sign →
 *       ledger write (SQLite in a temp dir, through BatchingLedger, many requests in flight) → PEM out;
 * each for the DER-template builder and the generic @peculiar/x509 one; and the ledger write alone.
 */
import { spawn } from 'node:child_process';
import { createHash, sign as nodeSign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_POLICY, planCertificate, type IssuancePolicyOptions } from '../src/ca/index.js';
import { wholeSeconds } from '../src/core/index.js';
import {
  Certificate,
  Csr,
  buildCsr,
  encodePem,
  formatSan,
  generateKeyPair,
  genericCertificateBuilder,
  issuerOf,
  randomSerial,
  rememberCsrPublicKey,
  templateCertificateBuilder,
  toSigningKey,
  type CertificateBuilder,
  type CertificateSpec,
  type Issuer,
  type SigningKey,
} from '../src/pki/index.js';
import { BatchingLedger, SqliteLedger, type Ledger, type NewLedgerEntry } from '../src/store/index.js';
import type { BenchOptions, BenchReport, BenchRow, Benchmark } from './run.js';
import { runTool } from './run-tool.js';

const DAY = 86_400_000;
const TRUST_DOMAIN = 'cluster.local';
/** Requests in flight in (b) and in the batched ledger run: a mass restart, or a busy gRPC server. */
const IN_FLIGHT = 64;
/** Distinct CSRs (distinct keys) cycled through in (b); each is parsed and verified afresh every time. */
const CSR_POOL = 200;

interface Measured {
  ops: number;
  wallMs: number;
  cpuUs: number;
}

function rate(m: Measured): number {
  return (m.ops / m.wallMs) * 1000;
}

function cpuPerOp(m: Measured): number {
  return m.cpuUs / m.ops;
}

/** Runs `step` back to back for `ms` (checking the clock every few operations). */
async function loop(ms: number, step: () => unknown): Promise<Measured> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let ops = 0;
  for (;;) {
    for (let i = 0; i < 16; i++) {
      const r = step();
      if (r instanceof Promise) await r;
    }
    ops += 16;
    if (performance.now() - t0 >= ms) break;
  }
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { ops, wallMs, cpuUs: cpu.user + cpu.system };
}

/** `workers` concurrent async loops of `step` for `ms`. */
async function concurrent(ms: number, workers: number, step: () => Promise<unknown>): Promise<Measured> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let ops = 0;
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < deadline) {
        await step();
        ops++;
      }
    }),
  );
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { ops, wallMs, cpuUs: cpu.user + cpu.system };
}

interface OpensslSpeed {
  signPerSec: number | null;
  verifyPerSec: number | null;
  version: string | null;
  output: string;
}


/** `openssl speed -seconds N ecdsap256`: one core, sign then verify; the last table line has sign/s and verify/s. */
async function opensslSpeed(seconds: number): Promise<OpensslSpeed> {
  const version = await runTool('openssl', ['version']);
  const r = await runTool('openssl', ['speed', '-seconds', String(seconds), 'ecdsap256']);
  const m = /\(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/.exec(r.stdout);
  return {
    signPerSec: m ? Number(m[1]) : null,
    verifyPerSec: m ? Number(m[2]) : null,
    version: version.code === 0 ? version.stdout.trim() : null,
    output: `${r.stdout}${r.stderr}`.trim().split('\n').slice(-3).join('\n'),
  };
}

interface Ca {
  cert: Certificate;
  issuer: Issuer;
  signer: SigningKey;
  pem: string;
  info: { maxNotAfter: Date; notBefore: Date; crlUrl: string; ocspUrl: string };
}

async function makeCa(): Promise<Ca> {
  const keys = generateKeyPair('ec-p256');
  const signer = await toSigningKey(keys.privateKey);
  const now = Date.now();
  const der = await genericCertificateBuilder.build(
    {
      serial: randomSerial(),
      subject: 'O=meshcert bench, CN=bench root',
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 3650 * DAY),
      publicKey: keys.publicKey,
      basicConstraints: { ca: true, pathLen: null },
      keyUsage: ['keyCertSign', 'cRLSign', 'digitalSignature'],
    },
    'self',
    signer,
  );
  const cert = Certificate.fromDer(der);
  return {
    cert,
    issuer: issuerOf(cert),
    signer,
    pem: cert.pem,
    // With a public URL, as `meshcert ca init --public-url` sets it: leaves get a CRL DP and an OCSP URL.
    info: { maxNotAfter: cert.notAfter, notBefore: cert.notBefore, crlUrl: 'http://127.0.0.1:15014/crl', ocspUrl: 'http://127.0.0.1:15014/ocsp' },
  };
}

function ledgerSubject(subject: CertificateSpec['subject']): string {
  return typeof subject === 'string' ? subject : subject.map(([k, v]) => `${k}=${v}`).join(', ');
}

/** Per-stage CPU time of the template pipeline, µs summed over requests (the synchronous stages only). */
interface Stages {
  parse: number;
  keyDecode: number;
  verifyPolicy: number;
  buildSign: number;
  output: number;
  requests: number;
}

interface PipelineRun {
  measured: Measured;
  ledger: { batches: number; entries: number; largestBatch: number };
  stages: Stages;
}

/** (b): the CSR pipeline with `builder`, IN_FLIGHT requests at a time, for `ms`. */
async function pipeline(
  ms: number,
  ca: Ca,
  builder: CertificateBuilder,
  csrs: Array<{ pem: string; spiffeId: string }>,
  dir: string,
  name: string,
  hint: boolean,
): Promise<PipelineRun> {
  const sqlite = SqliteLedger.open(join(dir, `${name}.db`));
  const ledger = new BatchingLedger(sqlite);
  const policy: IssuancePolicyOptions = { ...DEFAULT_POLICY, trustDomain: TRUST_DOMAIN };
  const issuerKeyId = ca.cert.issuerKeyId;
  const stages: Stages = { parse: 0, keyDecode: 0, verifyPolicy: 0, buildSign: 0, output: 0, requests: 0 };
  let next = 0;
  let out = 0;
  const now = (): number => performance.now() * 1000;
  const measured = await concurrent(ms, IN_FLIGHT, async () => {
    const item = csrs[next++ % csrs.length]!;
    const t0 = now();
    const csr = Csr.parse(item.pem, 'CSR');
    const t1 = now();
    // The CSR's key is decoded on first use (OpenSSL's decoder), whichever step touches it first.
    void csr.publicKey;
    if (hint) rememberCsrPublicKey(csr);
    const t2 = now();
    const plan = planCertificate({ csr, spiffeId: item.spiffeId }, policy, ca.info, new Date());
    const spec: CertificateSpec = { ...plan.spec, serial: randomSerial() };
    const t3 = now();
    // The template builder does all its work before returning the promise; timing the call alone keeps the other
    // requests' work (run while this one awaits) out of this one's stage.
    const building = builder.build(spec, ca.issuer, ca.signer);
    const t4 = now();
    const der = await building;
    const t4b = now();
    const pem = encodePem('CERTIFICATE', der);
    const entry: NewLedgerEntry = {
      serial: spec.serial,
      issuerKeyId,
      subject: ledgerSubject(spec.subject),
      sans: (spec.sans ?? []).map(formatSan),
      identity: plan.identity,
      profile: plan.profile,
      notBefore: wholeSeconds(spec.notBefore),
      notAfter: wholeSeconds(spec.notAfter),
      fingerprint: createHash('sha256').update(der).digest('hex'),
      pem,
    };
    const t5 = now();
    await ledger.record(entry);
    // PEM out: the chain as the Istio CA API returns it (leaf, then the trust bundle).
    out += (pem + ca.pem).length;
    stages.parse += t1 - t0;
    stages.keyDecode += t2 - t1;
    stages.verifyPolicy += t3 - t2;
    stages.buildSign += t4 - t3;
    stages.output += t5 - t4b;
    stages.requests++;
  });
  const stats = ledger.stats;
  const counts = await sqlite.counts();
  await ledger.close();
  if (counts.total !== stats.entries || out === 0) throw new Error(`${name}: ${counts.total} rows for ${stats.entries} certificates`);
  return { measured, ledger: { batches: stats.batches, entries: stats.entries, largestBatch: stats.largestBatch }, stages };
}

function ledgerEntry(n: number, pem: string): NewLedgerEntry {
  const at = wholeSeconds(new Date());
  return {
    serial: randomSerial(),
    issuerKeyId: 'be0c',
    subject: '',
    sans: [`URI:spiffe://${TRUST_DOMAIN}/ns/bench/sa/w${n % 1000}`],
    identity: `spiffe://${TRUST_DOMAIN}/ns/bench/sa/w${n % 1000}`,
    profile: 'svid',
    notBefore: new Date(at.getTime() - 60_000),
    notAfter: new Date(at.getTime() + DAY),
    fingerprint: 'ab'.repeat(32),
    pem,
  };
}

async function ledgerAlone(ms: number, dir: string, pem: string): Promise<{ batched: Measured; single: Measured; batches: number }> {
  const a = SqliteLedger.open(join(dir, 'ledger-batched.db'));
  const batching = new BatchingLedger(a);
  let n = 0;
  const batched = await concurrent(ms, IN_FLIGHT, () => batching.record(ledgerEntry(n++, pem)));
  const batches = batching.stats.batches;
  await batching.close();
  const b: Ledger = SqliteLedger.open(join(dir, 'ledger-single.db'));
  const single = await loop(ms, () => b.record(ledgerEntry(n++, pem)));
  await b.close();
  return { batched, single, batches };
}

async function run({ long, log }: BenchOptions): Promise<BenchReport> {
  const scale = long ? 5 : 1;
  const dir = mkdtempSync(join(tmpdir(), 'meshcert-bench-issue-'));
  try {
    const opensslSeconds = long ? 10 : 3;
    log(`openssl speed -seconds ${opensslSeconds} ecdsap256 (sign, then verify: ${2 * opensslSeconds} s)`);
    const speed = await opensslSpeed(opensslSeconds);
    const peer = 'openssl speed ecdsap256 sign';
    // The peer figure is settled at the end: openssl runs again after meshcert and the mean of both runs is the
    // reference, so that a load change on a shared 2-core machine during the run shows up instead of skewing it.
    let peerValue: number | null = speed.signPerSec;
    const vsOpenssl = (value: number): Partial<BenchRow> => ({ peer, peerValue, ratio: peerValue ? value / peerValue : null });

    const ca = await makeCa();
    const subjectKey = generateKeyPair('ec-p256').publicKey;
    const policy: IssuancePolicyOptions = { ...DEFAULT_POLICY, trustDomain: TRUST_DOMAIN };
    // (a)'s spec is what the policy makes for an SVID; only serial and validity change per certificate.
    const svid = planCertificate({ publicKey: subjectKey, spiffeId: `spiffe://${TRUST_DOMAIN}/ns/bench/sa/checkout` }, policy, ca.info, new Date()).spec;
    const svidSpec = (): CertificateSpec => {
      const now = Date.now();
      return { ...svid, serial: randomSerial(), notBefore: new Date(now - 60_000), notAfter: new Date(now + DAY) };
    };

    log('node:crypto sign, P-256, cached KeyObject');
    const tbsSized = Buffer.alloc(420, 0x5a);
    const nodeSignRun = await loop(1000 * scale, () => nodeSign('sha256', tbsSized, ca.signer.privateKey));

    // Warm both builders (JIT, memoized extensions) before timing them.
    for (let i = 0; i < 200; i++) await templateCertificateBuilder.build(svidSpec(), ca.issuer, ca.signer);
    for (let i = 0; i < 20; i++) await genericCertificateBuilder.build(svidSpec(), ca.issuer, ca.signer);
    log('(a) SVID build+sign, template');
    const aTemplate = await loop(3000 * scale, () => templateCertificateBuilder.build(svidSpec(), ca.issuer, ca.signer));
    log('(a) SVID build+sign, generic');
    const aGeneric = await loop(3000 * scale, () => genericCertificateBuilder.build(svidSpec(), ca.issuer, ca.signer));

    log(`(b) preparing ${CSR_POOL} CSRs (EC P-256 keys, SPIFFE URI SAN, as istio-agent sends them)`);
    const csrs: Array<{ pem: string; spiffeId: string }> = [];
    for (let i = 0; i < CSR_POOL; i++) {
      const key = await toSigningKey(generateKeyPair('ec-p256').privateKey);
      const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/w${i}`;
      csrs.push({ pem: (await buildCsr({ sans: [{ type: 'uri', value: spiffeId }] }, key)).pem, spiffeId });
    }
    await pipeline(300, ca, templateCertificateBuilder, csrs, dir, 'warmup', true);
    log('(b) CSR pipeline, template (CSR key hint)');
    const bTemplate = await pipeline(4000 * scale, ca, templateCertificateBuilder, csrs, dir, 'template', true);
    log('(b) CSR pipeline, template (no hint: the builder exports the key itself)');
    const bTemplateNoHint = await pipeline(2000 * scale, ca, templateCertificateBuilder, csrs, dir, 'template-nohint', false);
    log('(b) CSR pipeline, generic');
    const bGeneric = await pipeline(4000 * scale, ca, genericCertificateBuilder, csrs, dir, 'generic', false);

    log('ledger write alone: BatchingLedger with requests in flight, then record() one transaction each');
    const samplePem = encodePem('CERTIFICATE', await templateCertificateBuilder.build(svidSpec(), ca.issuer, ca.signer));
    const led = await ledgerAlone(2000 * scale, dir, samplePem);

    log(`openssl speed -seconds ${opensslSeconds} ecdsap256 again`);
    const speedAfter = await opensslSpeed(opensslSeconds);
    if (speed.signPerSec !== null && speedAfter.signPerSec !== null) peerValue = (speed.signPerSec + speedAfter.signPerSec) / 2;

    const s = bTemplate.stages;
    const perReq = (us: number): number => us / s.requests;
    const ledgerAmortized = 1e6 / rate(led.batched);
    const rows: BenchRow[] = [
      { figure: 'openssl speed ecdsap256 sign (1 core), mean', unit: 'sign/s', value: peerValue },
      { figure: 'openssl speed ecdsap256 sign, before / after', unit: 'sign/s', value: speed.signPerSec, peer: 'after', peerValue: speedAfter.signPerSec },
      { figure: 'openssl speed ecdsap256 verify (1 core)', unit: 'verify/s', value: speed.verifyPerSec },
      { figure: 'node:crypto sign P-256, cached KeyObject', unit: 'sign/s', value: rate(nodeSignRun), ...vsOpenssl(rate(nodeSignRun)), cpuUsPerOp: cpuPerOp(nodeSignRun) },
      { figure: '(a) SVID build+sign, template', unit: 'cert/s', value: rate(aTemplate), ...vsOpenssl(rate(aTemplate)), target: 0.4, cpuUsPerOp: cpuPerOp(aTemplate) },
      { figure: '(a) SVID build+sign, generic', unit: 'cert/s', value: rate(aGeneric), ...vsOpenssl(rate(aGeneric)), cpuUsPerOp: cpuPerOp(aGeneric) },
      { figure: '(a) template vs generic', unit: '×', value: rate(aTemplate) / rate(aGeneric) },
      { figure: '(a) template vs node:crypto sign alone', unit: '%', value: (100 * rate(aTemplate)) / rate(nodeSignRun) },
      { figure: '(b) CSR pipeline, template', unit: 'req/s', value: rate(bTemplate.measured), ...vsOpenssl(rate(bTemplate.measured)), target: 0.15, cpuUsPerOp: cpuPerOp(bTemplate.measured) },
      { figure: '(b) CSR pipeline, template, no CSR key hint', unit: 'req/s', value: rate(bTemplateNoHint.measured), ...vsOpenssl(rate(bTemplateNoHint.measured)), cpuUsPerOp: cpuPerOp(bTemplateNoHint.measured) },
      { figure: '(b) CSR pipeline, generic', unit: 'req/s', value: rate(bGeneric.measured), ...vsOpenssl(rate(bGeneric.measured)), cpuUsPerOp: cpuPerOp(bGeneric.measured) },
      { figure: '(b) template vs generic', unit: '×', value: rate(bTemplate.measured) / rate(bGeneric.measured) },
      { figure: 'ledger write, BatchingLedger, 64 in flight', unit: 'rows/s', value: rate(led.batched), cpuUsPerOp: cpuPerOp(led.batched) },
      { figure: 'ledger write, record(), one transaction each', unit: 'rows/s', value: rate(led.single), cpuUsPerOp: cpuPerOp(led.single) },
      { figure: '(b) template stage: PEM decode + CSR parse', unit: 'µs/req', value: perReq(s.parse) },
      { figure: '(b) template stage: CSR key decode (OpenSSL)', unit: 'µs/req', value: perReq(s.keyDecode) },
      { figure: '(b) template stage: CSR verify + policy', unit: 'µs/req', value: perReq(s.verifyPolicy) },
      { figure: '(b) template stage: build + sign', unit: 'µs/req', value: perReq(s.buildSign) },
      { figure: '(b) template stage: PEM + fingerprint + entry', unit: 'µs/req', value: perReq(s.output) },
      { figure: '(b) template stage: ledger write (amortized)', unit: 'µs/req', value: ledgerAmortized },
    ];
    const notes = [
      `one process, EC P-256 CA; ${IN_FLIGHT} requests in flight in (b); ${CSR_POOL} distinct CSRs cycled, each parsed and verified afresh; openssl measured before and after meshcert in the same run, ratios against the mean (${speed.version ?? 'openssl not found'})`,
      `(b) template: ${bTemplate.ledger.entries} certificates in ${bTemplate.ledger.batches} ledger transactions (largest ${bTemplate.ledger.largestBatch}); batched ledger alone: ${led.batches} transactions for ${led.batched.ops} rows`,
      'cpu µs/op is the whole process (all threads: the generic path signs through WebCrypto on the libuv pool, so it may use the second core); value is wall-clock throughput',
      'the CSR key hint (rememberCsrPublicKey) lets the template builder reuse the SPKI bytes of the CSR instead of exporting the key through OpenSSL 3.0\'s encoder (~100+ µs)',
    ];
    return {
      rows,
      notes,
      details: {
        openssl: { before: speed, after: speedAfter },
        inFlight: IN_FLIGHT,
        csrPool: CSR_POOL,
        stagesTemplate: bTemplate.stages,
        ledger: { batched: led.batched, single: led.single, batches: led.batches },
        measured: { nodeSignRun, aTemplate, aGeneric, bTemplate, bTemplateNoHint, bGeneric },
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const issueBenchmark: Benchmark = {
  name: 'issue',
  description: 'certificate issuance: (a) SVID build+sign, (b) CSR pipeline, template vs generic, beside openssl speed ecdsap256',
  run,
};
