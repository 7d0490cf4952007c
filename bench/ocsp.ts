/**
 * `npm run bench -- ocsp`: cached OCSP answers per second, by POST and by GET, from `meshcert serve` beside
 * `cfssl ocspserve` (pre-signed responses from a file; Debian's golang-cfssl) and `openssl ocsp` as a responder
 * (signs every response live), measured in the same run with the same requests and the same load client.
 *
 * Each server is pinned to CPU 0 and the load client (bench/ocsp-load-client.ts, its own process) to CPU 1. Server
 * CPU per response is utime+stime from /proc/PID/stat over the measured window, divided by the responses served;
 * throughput and latency percentiles come from the client. All servers run at once (idle but the one under load)
 * and the rounds alternate between them, so a change in the machine's load falls on all; each case keeps its round
 * with the least CPU per response. The PKI is one EC P-256 CA made here, LEAVES server
 * certificates issued and recorded in a ledger, and one delegated OCSP signer (meshcert issues its own; the peers
 * get one issued by the same CA). Requests are SHA-1 CertIDs without a nonce, as RFC 5019 clients send them.
 *
 * `openssl ocsp -port` binds every interface, so it runs in a private network namespace (`unshare -n`, root
 * needed) and the load client joins it with `nsenter --net`. cfssl ocspserve of 2016 answers GET with 400 (it does
 * not strip the leading "/" before base64-decoding), so cfssl is measured by POST only.
 *
 * Standalone (before the harness lists it): node --import reflect-metadata --import tsx bench/ocsp.ts [--long]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority, CertificateIssuer, initRootCa } from '../src/ca/index.js';
import { OcspResponse, buildOcspRequest, certIdFor, exportPrivateKeyPem, generateKeyPair, opensslSerial, verifyOcspResponse, type Certificate } from '../src/pki/index.js';
import { openLedger } from '../src/store/index.js';
import type { LoadResult, LoadSpec } from './ocsp-load-client.js';
import { renderTable, type BenchOptions, type BenchReport, type BenchRow, type Benchmark } from './run.js';
import { freePort } from './free-port.js';
import { runTool as exec } from './run-tool.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const LOAD_CLIENT = join(REPO, 'bench', 'ocsp-load-client.ts');
const LEAVES = 100;
/** Keep-alive connections of the load client: enough to keep one server core busy. */
const CONNECTIONS = 16;
const SERVER_CPU = '0';
const CLIENT_CPU = '1';
/** The issue's target: meshcert's server CPU per cached response at most this fraction of cfssl's. */
const CPU_TARGET_VS_CFSSL = 0.3;
const TICKS_PER_SECOND = 100;

interface Pki {
  dataDir: string;
  caPem: string;
  leaves: Array<{ cert: Certificate; file: string }>;
  signerPem: string;
  signerKey: string;
  requests: Buffer[];
  ca: Certificate;
}

interface Measurement {
  server: string;
  method: 'POST' | 'GET';
  keepAlive: boolean;
  load: LoadResult;
  /** Server CPU (all threads) during the measured window, µs. */
  cpuUs: number;
  cpuUsPerResponse: number;
  /** What the first answer said, checked before the load. */
  check: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}


async function has(cmd: string, args: string[]): Promise<boolean> {
  return (await exec(cmd, args)).code === 0;
}

/** utime + stime of a process (all its threads), in µs. */
function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND) * 1e6;
}

async function makePki(dir: string, publicUrl: string, log: (m: string) => void): Promise<Pki> {
  const dataDir = join(dir, 'data');
  await initRootCa(dataDir, { publicUrl });
  const ca = await CertificateAuthority.load(dataDir);
  const ledger = openLedger(dataDir);
  try {
    const issuer = new CertificateIssuer(ca, ledger);
    const leaves: Pki['leaves'] = [];
    for (let i = 0; i < LEAVES; i++) {
      const issued = await issuer.issue({ publicKey: generateKeyPair().publicKey, dnsNames: [`leaf${i}.bench.example`] });
      const file = join(dir, `leaf${i}.pem`);
      writeFileSync(file, issued.cert.pem);
      leaves.push({ cert: issued.cert, file });
    }
    // The peers' delegated signer: the same kind meshcert issues itself, from the same CA.
    const keys = generateKeyPair('ec-p256');
    const signer = await issuer.issueOcspSigner(keys.publicKey, 7 * 86_400_000);
    const signerPem = join(dir, 'ocsp-signer.pem');
    const signerKey = join(dir, 'ocsp-signer.key');
    writeFileSync(signerPem, signer.cert.pem);
    writeFileSync(signerKey, exportPrivateKeyPem(keys.privateKey), { mode: 0o600 });
    const requests = leaves.map((l) => buildOcspRequest({ certIds: [certIdFor(l.cert, ca.cert)] }));
    log(`PKI: CA, ${LEAVES} leaves in the ledger, a delegated signer for the peers`);
    return { dataDir, caPem: join(dataDir, 'ca-cert.pem'), leaves, signerPem, signerKey, requests, ca: ca.cert };
  } finally {
    await ledger.close();
  }
}

function specFor(pki: Pki, host: string, port: number, method: 'POST' | 'GET', getPrefix: string, durationMs: number, keepAlive: boolean, saveFirst?: string): LoadSpec {
  return {
    host,
    port,
    connections: CONNECTIONS,
    durationMs,
    keepAlive,
    ...(saveFirst ? { saveFirst } : {}),
    requests: pki.requests.map((der) =>
      method === 'POST'
        ? { method, path: getPrefix || '/', body: der.toString('base64') }
        : { method, path: `${getPrefix}/${encodeURIComponent(der.toString('base64'))}` },
    ),
  };
}

/** Runs the load client pinned to the client CPU (inside `netns` of a process when given) and returns its result. */
async function load(dir: string, spec: LoadSpec, netnsPid?: number): Promise<LoadResult> {
  const file = join(dir, `spec-${Date.now()}-${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(spec));
  const node = [process.execPath, '--import', 'tsx', LOAD_CLIENT, file];
  const argv = netnsPid ? ['nsenter', `--net=/proc/${netnsPid}/ns/net`, 'taskset', '-c', CLIENT_CPU, ...node] : ['taskset', '-c', CLIENT_CPU, ...node];
  const r = await exec(argv[0]!, argv.slice(1));
  if (r.code !== 0) throw new Error(`load client failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as LoadResult;
}

/** Checks the first answer a server gave: a verifiable response saying good for leaf 0. */
function checkAnswer(file: string, pki: Pki): string {
  if (!existsSync(file)) return 'no answer saved';
  const der = readFileSync(file);
  try {
    const v = verifyOcspResponse(der, { cert: pki.leaves[0]!.cert, issuer: pki.ca, at: new Date() });
    if (v.ok) return `good, verified (signer ${v.responder.subject})`;
    return `NOT OK: ${v.reasons.map((r) => r.message).join('; ')}`;
  } catch (err) {
    return `NOT OK: ${String(err)} (status ${(() => {
      try {
        return OcspResponse.parse(der).responseStatus;
      } catch {
        return 'unparsable';
      }
    })()})`;
  }
}

async function waitForPort(host: string, port: number, child: ChildProcess | null, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`server exited (${child.exitCode})`);
    const probe = await exec('bash', ['-c', `exec 3<>/dev/tcp/${host}/${port}`]);
    if (probe.code === 0) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${host}:${port}`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

interface Target {
  name: string;
  host: string;
  port: number;
  /** POST path; GET requests go to `${getPrefix}/BASE64`. */
  postPath: string;
  getPrefix: string | null;
  pid: number;
  netnsPid?: number;
}

async function measure(dir: string, pki: Pki, t: Target, method: 'POST' | 'GET', keepAlive: boolean, durationMs: number, log: (m: string) => void): Promise<Measurement> {
  const first = join(dir, `first-${t.name.replace(/\W+/g, '-')}-${method}.der`);
  const prefix = method === 'POST' ? t.postPath : t.getPrefix!;
  // Warm-up: fills caches and lets the JIT settle; its first answer is checked.
  await load(dir, specFor(pki, t.host, t.port, method, prefix, Math.min(1_500, durationMs), keepAlive, first), t.netnsPid);
  const check = checkAnswer(first, pki);
  const cpu0 = cpuOf(t.pid);
  const res = await load(dir, specFor(pki, t.host, t.port, method, prefix, durationMs, keepAlive), t.netnsPid);
  const cpuUs = cpuOf(t.pid) - cpu0;
  const m: Measurement = { server: t.name, method, keepAlive, load: res, cpuUs, cpuUsPerResponse: res.requests ? cpuUs / res.requests : NaN, check };
  log(
    `${t.name} ${method}${keepAlive ? '' : ' (connection per request)'}: ${Math.round(res.perSecond)}/s, ${m.cpuUsPerResponse.toFixed(1)} µs CPU/response, ` +
      `p50 ${Math.round(res.p50Us)} µs, p99 ${Math.round(res.p99Us)} µs, errors ${res.errors}${res.firstError ? ` (${res.firstError})` : ''}; first answer: ${check}`,
  );
  return m;
}

/** A running server and the cases measured against it. */
interface Running {
  target: Target;
  child: ChildProcess;
  cases: Array<{ method: 'POST' | 'GET'; keepAlive: boolean }>;
}

async function startMeshcert(dir: string, pki: Pki, port: number): Promise<Running> {
  const cfg = join(dir, 'serve.yaml');
  writeFileSync(cfg, `http:\n  listen: 127.0.0.1:${port}\n  publicUrl: http://127.0.0.1:${port}\n`);
  const main = join(REPO, 'src', 'cli', 'main.ts');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const child = spawn('taskset', ['-c', SERVER_CPU, process.execPath, '--import', 'tsx', main, 'serve', '--data-dir', pki.dataDir, '--config', cfg, '--log-level', 'error'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitForPort('127.0.0.1', port, child).catch(async (err: unknown) => {
    await stop(child);
    throw new Error(`meshcert serve did not start: ${String(err)}\n${stderr}`);
  });
  return {
    target: { name: 'meshcert serve', host: '127.0.0.1', port, postPath: '/ocsp', getPrefix: '/ocsp', pid: child.pid! },
    child,
    cases: [
      { method: 'POST', keepAlive: true },
      { method: 'GET', keepAlive: true },
      { method: 'POST', keepAlive: false },
    ],
  };
}

async function startCfssl(dir: string, pki: Pki, port: number): Promise<Running> {
  // One pre-signed response per certificate, base64 DER one per line: what ocspserve reads at start.
  const lines: string[] = [];
  for (let i = 0; i < pki.leaves.length; i += 8) {
    const batch = await Promise.all(
      pki.leaves.slice(i, i + 8).map((l) => exec('cfssl', ['ocspsign', '-ca', pki.caPem, '-responder', pki.signerPem, '-responder-key', pki.signerKey, '-cert', l.file, '-status', 'good'])),
    );
    for (const r of batch) {
      if (r.code !== 0) throw new Error(`cfssl ocspsign failed: ${r.stderr}`);
      lines.push((JSON.parse(r.stdout) as { ocspResponse: string }).ocspResponse);
    }
  }
  const responses = join(dir, 'cfssl-responses.txt');
  writeFileSync(responses, `${lines.join('\n')}\n`);
  const child = spawn('taskset', ['-c', SERVER_CPU, 'cfssl', 'ocspserve', '-address', '127.0.0.1', '-port', String(port), '-responses', responses, '-loglevel', '4'], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await waitForPort('127.0.0.1', port, child).catch(async (err: unknown) => {
    await stop(child);
    throw err;
  });
  // GET is left out: this cfssl answers every GET with 400 (see the header comment).
  return { target: { name: 'cfssl ocspserve', host: '127.0.0.1', port, postPath: '/', getPrefix: null, pid: child.pid! }, child, cases: [{ method: 'POST', keepAlive: true }] };
}

async function startOpenssl(dir: string, pki: Pki, port: number): Promise<Running> {
  // index.txt (tab-separated): status, expiry YYMMDDHHMMSSZ, revocation, serial hex, file, subject.
  const index = pki.leaves
    .map((l) => {
      const t = l.cert.notAfter.toISOString();
      const exp = `${t.slice(2, 4)}${t.slice(5, 7)}${t.slice(8, 10)}${t.slice(11, 13)}${t.slice(14, 16)}${t.slice(17, 19)}Z`;
      return `V\t${exp}\t\t${opensslSerial(l.cert.serial)}\tunknown\t/CN=${l.cert.commonName}`;
    })
    .join('\n');
  const indexFile = join(dir, 'index.txt');
  writeFileSync(indexFile, `${index}\n`);
  // A private network namespace: the responder binds every interface, and must not be reachable from outside.
  // It logs every request line on stderr: to a file, which also says when it is ready.
  const logFile = join(dir, 'openssl-ocsp.log');
  const script = `ip link set lo up && exec taskset -c ${SERVER_CPU} openssl ocsp -index ${indexFile} -port ${port} -rsigner ${pki.signerPem} -rkey ${pki.signerKey} -CA ${pki.caPem} -nmin 60 -ignore_err 2>${logFile}`;
  const child = spawn('unshare', ['-n', 'bash', '-c', script], { stdio: ['ignore', 'ignore', 'ignore'] });
  // Not a connect probe: a connection that closes without a request leaves this responder waiting on it for good.
  const deadline = Date.now() + 10_000;
  while (!(existsSync(logFile) && readFileSync(logFile, 'utf8').includes('waiting for OCSP client connections'))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop(child);
      throw new Error(`openssl ocsp did not start: ${existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''}`);
    }
    await sleep(100);
  }
  return {
    target: { name: 'openssl ocsp', host: '127.0.0.1', port, postPath: '/', getPrefix: '', pid: child.pid!, netnsPid: child.pid! },
    child,
    cases: [
      { method: 'POST', keepAlive: true },
      { method: 'GET', keepAlive: true },
    ],
  };
}

/** Per case, the round with the least server CPU per response: the one least disturbed by other processes. */
function best(ms: Measurement[]): Measurement[] {
  const byCase = new Map<string, Measurement>();
  for (const m of ms) {
    const k = `${m.server}|${m.method}|${m.keepAlive}`;
    const cur = byCase.get(k);
    if (!cur || m.cpuUsPerResponse < cur.cpuUsPerResponse) byCase.set(k, m);
  }
  return [...byCase.values()];
}

function find(ms: Measurement[], server: string, method: 'POST' | 'GET', keepAlive = true): Measurement | undefined {
  return ms.find((m) => m.server === server && m.method === method && m.keepAlive === keepAlive);
}

function rows(ms: Measurement[]): BenchRow[] {
  const out: BenchRow[] = [];
  const ratio = (a?: number, b?: number): number | null => (a !== undefined && b !== undefined && b > 0 && Number.isFinite(a) ? a / b : null);
  for (const method of ['POST', 'GET'] as const) {
    const ours = find(ms, 'meshcert serve', method);
    for (const peer of ['cfssl ocspserve', 'openssl ocsp']) {
      const p = find(ms, peer, method);
      if (!ours) continue;
      const peerName = `${peer}${p ? '' : ' (not measured)'}`;
      out.push(
        {
          figure: `${method}: cached responses per second`,
          unit: 'responses/s',
          value: ours.load.perSecond,
          peer: peerName,
          peerValue: p?.load.perSecond ?? null,
          ratio: ratio(ours.load.perSecond, p?.load.perSecond),
          cpuUsPerOp: ours.cpuUsPerResponse,
        },
        {
          figure: `${method}: server CPU per response`,
          unit: 'µs',
          value: ours.cpuUsPerResponse,
          peer: peerName,
          peerValue: p?.cpuUsPerResponse ?? null,
          ratio: ratio(ours.cpuUsPerResponse, p?.cpuUsPerResponse),
        },
        {
          figure: `${method}: p99 latency (${CONNECTIONS} connections)`,
          unit: 'µs',
          value: ours.load.p99Us,
          peer: peerName,
          peerValue: p?.load.p99Us ?? null,
          ratio: ratio(ours.load.p99Us, p?.load.p99Us),
        },
      );
    }
  }
  const close = find(ms, 'meshcert serve', 'POST', false);
  const osslPost = find(ms, 'openssl ocsp', 'POST');
  if (close) {
    out.push({
      figure: 'POST, connection per request: server CPU per response',
      unit: 'µs',
      value: close.cpuUsPerResponse,
      peer: `openssl ocsp${osslPost ? '' : ' (not measured)'}`,
      peerValue: osslPost?.cpuUsPerResponse ?? null,
      ratio: ratio(close.cpuUsPerResponse, osslPost?.cpuUsPerResponse),
      cpuUsPerOp: close.cpuUsPerResponse,
    });
  }
  return out;
}

export const ocspBenchmark: Benchmark = {
  name: 'ocsp',
  description: 'cached OCSP responses (POST and GET) from meshcert serve vs cfssl ocspserve and openssl ocsp, server CPU 0 / client CPU 1',
  async run(options: BenchOptions): Promise<BenchReport> {
    const { log } = options;
    const durationMs = options.long ? 15_000 : 5_000;
    const rounds = options.long ? 3 : 2;
    const all: Measurement[] = [];
    const dir = mkdtempSync(join(tmpdir(), 'meshcert-bench-ocsp-'));
    const notes: string[] = [];
    const ms: Measurement[] = [];
    try {
      const ports = { meshcert: await freePort(), cfssl: await freePort(), openssl: await freePort() };
      const pki = await makePki(dir, `http://127.0.0.1:${ports.meshcert}`, log);
      if (!(await has('taskset', ['-V']))) throw new Error('taskset (util-linux) is needed to pin server and client');

      const running: Running[] = [];
      try {
        running.push(await startMeshcert(dir, pki, ports.meshcert));
        if (await has('cfssl', ['version'])) running.push(await startCfssl(dir, pki, ports.cfssl));
        else notes.push('cfssl not found: apt-get install -y golang-cfssl');
        if (process.getuid?.() === 0 && (await has('unshare', ['-n', 'true']))) running.push(await startOpenssl(dir, pki, ports.openssl));
        else notes.push('openssl ocsp not measured: its responder binds every interface, so it runs in `unshare -n`, which needs root');
        log(`servers up: ${running.map((r) => r.target.name).join(', ')}; ${rounds} rounds of ${durationMs / 1000} s per case`);
        // Rounds alternate between the servers (all idle but the one under load), so that a change in the machine's
        // load during the run falls on every server alike; each case keeps its least disturbed round.
        for (let round = 1; round <= rounds; round++) {
          for (const r of running) for (const c of r.cases) all.push(await measure(dir, pki, r.target, c.method, c.keepAlive, durationMs, (m) => log(`round ${round}: ${m}`)));
        }
      } finally {
        await Promise.all(running.map((r) => stop(r.child)));
      }
      ms.push(...best(all));
      const ours = find(ms, 'meshcert serve', 'POST');
      const cfssl = find(ms, 'cfssl ocspserve', 'POST');
      if (ours && cfssl) {
        const r = ours.cpuUsPerResponse / cfssl.cpuUsPerResponse;
        notes.push(
          `server CPU per cached POST response: meshcert ${ours.cpuUsPerResponse.toFixed(1)} µs = ${r.toFixed(2)}× cfssl's ${cfssl.cpuUsPerResponse.toFixed(1)} µs ` +
            `(target ≤ ${CPU_TARGET_VS_CFSSL}×: ${r <= CPU_TARGET_VS_CFSSL ? 'met' : 'NOT met'})`,
        );
      }
      notes.push(
        `each case measured ${rounds} times, alternating between servers; the table keeps each case's round with the least server CPU per response`,
        ...ms.map(
          (m) =>
            `${m.server} ${m.method}${m.keepAlive ? ' keep-alive' : ' connection per request'}: ${Math.round(m.load.perSecond)}/s, ${m.cpuUsPerResponse.toFixed(1)} µs CPU, ` +
            `p50 ${Math.round(m.load.p50Us)} µs, p99 ${Math.round(m.load.p99Us)} µs, ${m.load.connects} connections, ${m.load.errors} errors; answer ${m.check}`,
        ),
        'cfssl ocspserve (2016) answers GET /BASE64 with 400: it base64-decodes the path with its leading "/", so its GET rows are empty',
        '`openssl ocsp` signs each response live (and closes the connection after each); meshcert and cfssl serve pre-signed responses',
        `load average at end: ${loadavg().map((l) => l.toFixed(2)).join(' ')}; other processes on the machine inflate CPU per response and latency (see the rounds in the JSON)`,
      );
      return {
        rows: rows(ms),
        notes,
        details: { leaves: LEAVES, connections: CONNECTIONS, durationMs, rounds, measurements: all.map((m) => ({ ...m, load: { ...m.load, bodyBytes: m.load.bodyBytes.slice(0, 3) } })) },
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

// Standalone, until bench/run.ts lists this benchmark.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const long = process.argv.includes('--long');
  const t0 = Date.now();
  ocspBenchmark
    .run({ long, log: (m) => console.error(`[ocsp ${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`) })
    .then((report) => {
      console.log(`\nocsp: ${ocspBenchmark.description}\n`);
      console.log(renderTable(report.rows));
      if (report.notes.length) console.log(`\n${report.notes.map((n) => `- ${n}`).join('\n')}`);
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
}
