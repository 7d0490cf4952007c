/**
 * `npm run bench -- ca`: certificate issuance through the Istio CA gRPC API of a real `meshcert serve` process,
 * beside cfssl's signing API (`cfssl serve`, POST /api/v1/cfssl/sign) under the same load in the same run.
 *
 * - Each server runs alone, pinned to CPU 0 (`taskset -c 0`); the load client is its own process pinned to CPU 1
 *   (bench/ca-load-client.ts), so on 2 cores the client neither competes with the server nor is counted as it.
 * - The load: 32 callers, each on its own connection (gRPC over TLS with a bootstrap token that is not one-time,
 *   no rate limit; HTTP/1.1 keep-alive for cfssl), each sending its next CSR as soon as its answer came back.
 *   EC P-256 keys and CSRs are made beforehand (a pool cycled through; each request is parsed, verified and
 *   issued afresh). Both servers get the same warm-up, then the same number of measured requests: `count`, or as
 *   many as meshcert answered before the time cap (the run stays under a minute without --long).
 * - Reported per server: CPU time per issued certificate (utime + stime of every thread, /proc/PID/stat, in
 *   ticks of `getconf CLK_TCK`), throughput, p50/p99 latency; meshcert ÷ cfssl, and p99 against the issue's 20 ms.
 *   Also what else used the two CPUs meanwhile (/proc/stat): on a shared machine that explains odd throughput.
 * - The commit measured, and whether the issuer uses templateCertificateBuilder and the server a BatchingLedger, go
 *   into the notes: the figures move as those land.
 *
 * MESHCERT_BENCH_CPU_PROF=1 runs the meshcert server with `--cpu-prof` and adds the functions with the most time
 * during the measured phase to the notes (=DIR keeps the .cpuprofile there). Profiling adds CPU of its own:
 * compare figures from runs without it.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { buildCsr, generateKeyPair, toSigningKey } from '../src/pki/index.js';
import type { CaLoadResult, CaLoadSpec } from './ca-load-client.js';
import type { BenchOptions, BenchReport, BenchRow, Benchmark } from './run.js';
import { freePort } from './free-port.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const MAIN = join(REPO, 'src', 'cli', 'main.ts');
const LOAD_CLIENT = fileURLToPath(new URL('./ca-load-client.ts', import.meta.url));

const CONCURRENCY = 32;
const TRUST_DOMAIN = 'cluster.local';
const IDENTITY = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/load`;
const SERVER_NAME = 'istiod.istio-system.svc';
/** cfssl's `hosts` (it drops URI SANs from CSRs, and a spiffe:// host would become a DNS SAN): one DNS SAN. */
const CFSSL_HOSTS = ['load.bench.svc.cluster.local'];
const TARGET_CPU_RATIO = 0.5;
const TARGET_P99_MS = 20;

interface Tracked {
  name: string;
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: () => string;
  stderr: () => string;
}

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.NODE_TEST_CONTEXT;
  delete env.MESHCERT_DATA_DIR;
  return env;
}

function hasTaskset(): boolean {
  return spawnSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' }).status === 0;
}

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function clkTck(): number {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  return r.status === 0 && n > 0 ? n : 100;
}

async function waitForPort(port: number, t: Tracked, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (t.proc.exitCode !== null || t.proc.signalCode !== null || Date.now() > deadline) {
      throw new Error(`${t.name} did not listen on 127.0.0.1:${port} (exit ${t.proc.exitCode ?? t.proc.signalCode})\n${t.stderr().slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: still running after ${ms} ms`)), ms);
    }),
  ]);
}

/** The cfssl CA as PEERS.md §0 makes it: EC P-256, self-signed with openssl. */
function makeCfsslCa(dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '30', '-subj', '/CN=peers-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  writeFileSync(
    join(dir, 'cfssl.json'),
    JSON.stringify({ signing: { default: { expiry: '24h', usages: ['digital signature', 'key encipherment', 'server auth', 'client auth'] } } }),
  );
}

/** What was measured: the commit, whether src/ is modified, and which builder the issuer is wired to. */
function sourceState(): { commit: string; dirtySrc: number; builder: string; ledger: string } {
  const git = (args: string[]): string => {
    const r = spawnSync('git', args, { cwd: REPO, encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : '';
  };
  const commit = git(['log', '-1', '--oneline']) || 'unknown';
  const dirtySrc = git(['status', '--porcelain', '--', 'src']).split('\n').filter(Boolean).length;
  const read = (p: string): string => {
    try {
      return readFileSync(join(REPO, p), 'utf8');
    } catch {
      return '';
    }
  };
  // The issuer builds with `ca.builder`: the CA's default (authority.ts) unless someone swaps it (withBuilder).
  const issuer = read('src/ca/certificate-issuer.ts');
  const authority = read('src/ca/authority.ts');
  const swappers = ['src/server/control-plane.ts', 'src/cli/commands/serve.ts'].filter((p) => /templateCertificateBuilder/.test(read(p)));
  const fallback = /options\.builder \?\? (\w+)/.exec(authority)?.[1];
  let builder: string;
  if (/templateCertificateBuilder/.test(issuer)) builder = 'templateCertificateBuilder (named in src/ca/certificate-issuer.ts)';
  else if (swappers.length) builder = `templateCertificateBuilder (wired in ${swappers.join(', ')})`;
  else if (fallback) builder = `${fallback} (the CA default in src/ca/authority.ts; certificate-issuer.ts does not name templateCertificateBuilder)`;
  else builder = 'unknown';
  const ledger = /BatchingLedger/.test(read('src/server/control-plane.ts'))
    ? 'BatchingLedger (named in src/server/control-plane.ts)'
    : 'SqliteLedger, one transaction per certificate (src/server/control-plane.ts does not name BatchingLedger)';
  return { commit, dirtySrc, builder, ledger };
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

interface ProfileItem {
  name: string;
  ms: number;
  pct: number;
}

interface ProfileSummary {
  sampledMs: number;
  /** Self time per function. */
  functions: ProfileItem[];
  /** Self time per file of this repository or per npm package. */
  files: ProfileItem[];
  /** Inclusive time (the function or anything it called) of this repository's functions: where the steps go. */
  ours: ProfileItem[];
}

/**
 * Self and inclusive time per function in a V8 .cpuprofile, counting only samples inside [fromUs, toUs]
 * (CLOCK_MONOTONIC µs: the clock of the profile's timestamps and of process.hrtime in the load client).
 */
function summarizeProfile(file: string, fromUs: number, toUs: number, top: number): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n] as const));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let t = prof.startTime;
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i] ?? 0;
    if (t < fromUs || t > toUs) continue;
    // A sample's weight: the time to the next sample (the interval, ~1 ms by default).
    const w = prof.timeDeltas[i + 1] ?? 0;
    self.set(prof.samples[i]!, (self.get(prof.samples[i]!) ?? 0) + w);
    total += w;
  }
  const shortUrl = (url: string): string => {
    const p = url.startsWith('file://') ? fileURLToPath(url) : url;
    const nm = p.lastIndexOf('node_modules/');
    if (nm >= 0) return p.slice(nm + 'node_modules/'.length);
    return p.startsWith(REPO) ? relative(REPO, p) : p;
  };
  const nameOf = (n: ProfileNode): { name: string; url: string } => {
    const url = shortUrl(n.callFrame.url);
    // Files loaded through tsx report line 0 for everything: give a line only where it means something.
    const line = n.callFrame.lineNumber > 0 ? `:${n.callFrame.lineNumber + 1}` : '';
    return { name: `${n.callFrame.functionName || '(anonymous)'}${url ? ` ${url}${line}` : ''}`, url };
  };
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  const ours = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const { name, url } = nameOf(n);
    fn.set(name, (fn.get(name) ?? 0) + us);
    let group = url || n.callFrame.functionName;
    const m = /^(@[^/]+\/[^/]+|[^/@][^/]*)\//.exec(url);
    if (m && !url.startsWith('src/')) group = m[1]!;
    files.set(group, (files.get(group) ?? 0) + us);
    // Inclusive: every distinct function of src/ on this sample's stack.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = nameOf(byId.get(cur)!);
      if (f.url.startsWith('src/') && !seen.has(f.name)) {
        seen.add(f.name);
        ours.set(f.name, (ours.get(f.name) ?? 0) + us);
      }
    }
  }
  const list = (m: Map<string, number>): ProfileItem[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, pct: total ? (100 * us) / total : 0 }));
  return { sampledMs: total / 1000, functions: list(fn), files: list(files), ours: list(ours) };
}

interface ServerRun {
  result: CaLoadResult;
  profile?: ProfileSummary;
}

async function runLoadClient(spec: CaLoadSpec, dir: string, name: string, pin: boolean, track: (t: Tracked) => void, timeoutMs: number): Promise<CaLoadResult> {
  const specFile = join(dir, `${name}-load.json`);
  writeFileSync(specFile, JSON.stringify(spec));
  const args = ['--import', 'reflect-metadata', '--import', 'tsx', LOAD_CLIENT, specFile];
  const t = spawnTracked(`${name} load client`, pin ? 'taskset' : process.execPath, pin ? ['-c', '1', process.execPath, ...args] : args);
  track(t);
  const exit = await withTimeout(t.exited, timeoutMs, `the ${name} load client`);
  if (exit.code !== 0) throw new Error(`the ${name} load client failed (exit ${exit.code ?? exit.signal}):\n${t.stderr().slice(-3000)}`);
  const line = t.stdout().trim().split('\n').at(-1) ?? '';
  return JSON.parse(line) as CaLoadResult;
}

function spawnTracked(name: string, cmd: string, args: string[], cwd = REPO): Tracked {
  const proc = spawn(cmd, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  proc.stderr!.on('data', (b: Buffer) => {
    err += b.toString('utf8');
    if (err.length > 1_000_000) err = err.slice(-200_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('error', (e) => {
      err += `\n${e.message}`;
      resolve({ code: null, signal: null });
    });
    proc.once('close', (code, signal) => resolve({ code, signal }));
  });
  return { name, proc, exited, stdout: () => out, stderr: () => err };
}

function alive(t: Tracked): boolean {
  return t.proc.exitCode === null && t.proc.signalCode === null && t.proc.pid !== undefined;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
async function stop(t: Tracked, graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (alive(t)) t.proc.kill('SIGTERM');
  const timer = setTimeout(() => alive(t) && t.proc.kill('SIGKILL'), graceMs);
  try {
    return await t.exited;
  } finally {
    clearTimeout(timer);
  }
}

async function ensureCfssl(log: (m: string) => void): Promise<{ path: string | null; how: string }> {
  let path = which('cfssl');
  if (path) return { path, how: 'found' };
  const install = 'apt-get install -y golang-cfssl';
  if (process.getuid?.() === 0 && which('apt-get')) {
    log(`cfssl not found: ${install}`);
    let r = spawnSync('apt-get', ['install', '-y', 'golang-cfssl'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 300_000 });
    if (r.status !== 0) {
      log('apt-get install failed; apt-get update, then again');
      spawnSync('apt-get', ['update'], { stdio: 'ignore', timeout: 300_000 });
      r = spawnSync('apt-get', ['install', '-y', 'golang-cfssl'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 300_000 });
    }
    path = which('cfssl');
    if (path) return { path, how: `installed (${install})` };
    return { path: null, how: `${install} failed: ${r.stderr?.toString().trim().split('\n').at(-1) ?? ''}` };
  }
  return { path: null, how: `cfssl not found; install it with \`sudo ${install}\` (Debian) and run again` };
}

async function run({ long, log }: BenchOptions): Promise<BenchReport> {
  const warmup = long ? 2000 : 500;
  const count = long ? 20_000 : 3000;
  const capMs = long ? 120_000 : 20_000;
  const warmupCapMs = long ? 20_000 : 6_000;
  const csrPool = long ? 512 : 256;
  const pin = hasTaskset();
  const tck = clkTck();
  const profileEnv = process.env.MESHCERT_BENCH_CPU_PROF;
  const profiling = !!profileEnv;
  const state = sourceState();
  const dir = mkdtempSync(join(tmpdir(), 'meshcert-bench-ca-'));
  const tracked: Tracked[] = [];
  const track = (t: Tracked): void => void tracked.push(t);
  // Last resort if the harness itself dies or is told to stop: no server outlives it, no temp dir stays.
  const onExit = (): void => {
    tracked.forEach((t) => alive(t) && t.proc.kill('SIGKILL'));
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    onExit();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('exit', onExit);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const notes: string[] = [];
  const details: Record<string, unknown> = { concurrency: CONCURRENCY, warmup, count, csrPool, clkTck: tck, pinned: pin, source: state, profiling };
  let mesh = null as ServerRun | null;
  let cf = null as ServerRun | null;
  let cfsslHow = '';
  try {
    log(`measuring ${state.commit}${state.dirtySrc ? ` + ${state.dirtySrc} modified/new files under src/` : ''}; issuer builder: ${state.builder}; ledger: ${state.ledger}`);
    if (!pin) log('taskset not found: servers and load client are not pinned (figures are less meaningful)');

    // --- meshcert serve, pinned to CPU 0 (started first: it takes a few seconds; the CSRs are made meanwhile).
    const token = randomBytes(24).toString('hex');
    const tokenFile = join(dir, 'tokens.yaml');
    writeFileSync(tokenFile, stringify({ tokens: [{ name: 'bench-load', token, identity: IDENTITY }] })); // not one-time
    const configFile = join(dir, 'serve.yaml');
    writeFileSync(
      configFile,
      stringify({
        trustDomain: TRUST_DOMAIN,
        grpc: { listen: '127.0.0.1:0', dnsNames: [SERVER_NAME, 'localhost'] },
        issuance: { defaultTtl: '24h', maxTtl: '48h' },
        auth: { bootstrapTokens: tokenFile },
        // No rateLimit section: off.
      }),
    );
    const dataDir = join(dir, 'meshcert-data');
    // MESHCERT_BENCH_CPU_PROF=1: profile into the temp dir (removed); =DIR: keep the .cpuprofile in DIR.
    const profDir = profileEnv && profileEnv !== '1' ? profileEnv : join(dir, 'prof');
    const nodeArgs = ['--import', 'tsx', ...(profiling ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), MAIN, 'serve', '--config', configFile, '--data-dir', dataDir, '--log-level', 'warn'];
    log(`starting meshcert serve${pin ? ' (taskset -c 0)' : ''}${profiling ? ' with --cpu-prof' : ''}`);
    const server = spawnTracked('meshcert serve', pin ? 'taskset' : process.execPath, pin ? ['-c', '0', process.execPath, ...nodeArgs] : nodeArgs);
    track(server);

    log(`making ${csrPool} EC P-256 keys and CSRs (URI SAN ${IDENTITY})`);
    const csrs: string[] = [];
    for (let i = 0; i < csrPool; i++) {
      const key = await toSigningKey(generateKeyPair('ec-p256').privateKey);
      csrs.push((await buildCsr({ sans: [{ type: 'uri', value: IDENTITY }] }, key)).pem);
    }

    const cfssl = await ensureCfssl(log);
    cfsslHow = cfssl.how;

    const grpcLine = /CA gRPC API \(istio\.v1\.auth\.IstioCertificateService\): (127\.0\.0\.1:\d+) \(TLS/;
    const deadline = Date.now() + 30_000;
    let address: string | undefined;
    while (!(address = grpcLine.exec(server.stdout())?.[1])) {
      if (!alive(server) || Date.now() > deadline) throw new Error(`meshcert serve did not print its gRPC address\n--- stdout\n${server.stdout()}--- stderr\n${server.stderr().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const rootPem = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
    const common = { csrs, concurrency: CONCURRENCY, warmup, count, warmupCapMs, capMs, clkTck: tck, serverCpu: pin ? 0 : null, clientCpu: pin ? 1 : null };
    log(`meshcert on ${address} (pid ${server.proc.pid}): ${warmup} warm-up requests, then ${count} measured, ${CONCURRENCY} callers`);
    const meshResult = await runLoadClient(
      {
        ...common,
        target: { kind: 'meshcert', address, rootPem, serverName: SERVER_NAME, bearerToken: token, validitySeconds: 86_400, expectSpiffeId: IDENTITY },
        serverPid: server.proc.pid!,
      },
      dir,
      'meshcert',
      pin,
      track,
      warmupCapMs + capMs + 30_000,
    );
    mesh = { result: meshResult };
    log(
      `meshcert: ${meshResult.measured.requests} certs in ${(meshResult.measured.wallMs / 1000).toFixed(1)} s, ` +
        `${meshResult.serverCpuUsPerCert.toFixed(0)} µs server CPU/cert, p99 ${meshResult.measured.p99Ms.toFixed(1)} ms, ${meshResult.measured.errors} errors`,
    );
    const stopped = await stop(server, 15_000);
    if (stopped.code !== 0) notes.push(`meshcert serve exited with ${stopped.code ?? stopped.signal} on SIGTERM`);
    if (profiling) {
      // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: the server's main thread is thread 0.
      const files = existsSync(profDir) ? readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${server.proc.pid}.0.`)) : [];
      if (files.length) {
        const newest = files.map((f) => join(profDir, f)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
        mesh.profile = summarizeProfile(newest, meshResult.monotonicUs.start, meshResult.monotonicUs.end, 25);
        if (profDir !== join(dir, 'prof')) notes.push(`CPU profile kept: ${newest}`);
      } else {
        notes.push('--cpu-prof wrote no profile (the server did not exit cleanly)');
      }
    }

    // --- cfssl serve, pinned to CPU 0, same CSRs, same load.
    if (cfssl.path) {
      const caDir = join(dir, 'cfssl');
      makeCfsslCa(caDir);
      const port = await freePort();
      const cfArgs = ['serve', '-address', '127.0.0.1', '-port', String(port), '-ca', 'ca.pem', '-ca-key', 'ca.key', '-config', 'cfssl.json', '-loglevel', '4'];
      log(`starting cfssl serve on 127.0.0.1:${port}${pin ? ' (taskset -c 0)' : ''}`);
      const cfs = spawnTracked('cfssl serve', pin ? 'taskset' : cfssl.path, pin ? ['-c', '0', cfssl.path, ...cfArgs] : cfArgs, caDir);
      track(cfs);
      await waitForPort(port, cfs, 15_000);
      // The same load: as many measured requests as meshcert answered (fewer than `count` when its time cap ended it).
      const cfCount = meshResult.measured.requests + meshResult.measured.errors;
      log(`cfssl (pid ${cfs.proc.pid}): ${warmup} warm-up requests, then ${cfCount} measured, ${CONCURRENCY} callers`);
      const cfResult = await runLoadClient(
        { ...common, count: cfCount, target: { kind: 'cfssl', host: '127.0.0.1', port, hosts: CFSSL_HOSTS }, serverPid: cfs.proc.pid! },
        dir,
        'cfssl',
        pin,
        track,
        warmupCapMs + capMs + 30_000,
      );
      cf = { result: cfResult };
      log(
        `cfssl: ${cfResult.measured.requests} certs in ${(cfResult.measured.wallMs / 1000).toFixed(1)} s, ` +
          `${cfResult.serverCpuUsPerCert.toFixed(0)} µs server CPU/cert, p99 ${cfResult.measured.p99Ms.toFixed(1)} ms, ${cfResult.measured.errors} errors`,
      );
      await stop(cfs, 5_000);
    }
  } finally {
    await Promise.all(tracked.map((t) => stop(t, 2_000)));
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmSync(dir, { recursive: true, force: true });
  }

  if (!mesh) throw new Error('meshcert was not measured');
  const m = mesh.result;
  const c = cf?.result ?? null;
  const ratio = (a: number, b: number | null | undefined): number | null => (b && Number.isFinite(a) && Number.isFinite(b) ? a / b : null);
  const cpuRatio = ratio(m.serverCpuUsPerCert, c?.serverCpuUsPerCert);
  const verdict = (ok: boolean | null): string => (ok === null ? 'no peer' : ok ? 'met' : 'NOT met');
  const peer = c ? 'cfssl serve' : 'cfssl serve (not run)';
  const rows: BenchRow[] = [
    {
      figure: `server CPU per certificate (target ≤ ${TARGET_CPU_RATIO}× cfssl: ${verdict(cpuRatio === null ? null : cpuRatio <= TARGET_CPU_RATIO)})`,
      unit: 'µs/cert',
      value: m.serverCpuUsPerCert,
      peer,
      peerValue: c?.serverCpuUsPerCert ?? null,
      ratio: cpuRatio,
    },
    {
      figure: `throughput, ${CONCURRENCY} callers, server on 1 CPU`,
      unit: 'cert/s',
      value: m.measured.perSecond,
      peer,
      peerValue: c?.measured.perSecond ?? null,
      ratio: ratio(m.measured.perSecond, c?.measured.perSecond),
      cpuUsPerOp: m.serverCpuUsPerCert,
    },
    { figure: 'latency p50', unit: 'ms', value: m.measured.p50Ms, peer, peerValue: c?.measured.p50Ms ?? null, ratio: ratio(m.measured.p50Ms, c?.measured.p50Ms) },
    { figure: 'latency p99', unit: 'ms', value: m.measured.p99Ms, peer, peerValue: c?.measured.p99Ms ?? null, ratio: ratio(m.measured.p99Ms, c?.measured.p99Ms) },
    {
      figure: `latency p99 vs the ${TARGET_P99_MS} ms target (ratio = target ÷ p99)`,
      unit: 'ms',
      value: m.measured.p99Ms,
      peer: 'target (issue)',
      peerValue: TARGET_P99_MS,
      ratio: TARGET_P99_MS / m.measured.p99Ms,
      target: 1,
    },
    { figure: 'server CPU busy during the measured phase', unit: '% of 1 CPU', value: 100 * m.serverBusy, peer, peerValue: c ? 100 * c.serverBusy : null },
    {
      figure: 'other processes on the server CPU / client CPU',
      unit: '% of 1 CPU',
      value: m.otherLoadPct?.serverCpu ?? null,
      peer: 'client CPU',
      peerValue: m.otherLoadPct?.clientCpu ?? null,
    },
    ...(c
      ? [{ figure: 'other processes on the server CPU / client CPU, cfssl run', unit: '% of 1 CPU', value: c.otherLoadPct?.serverCpu ?? null, peer: 'client CPU', peerValue: c.otherLoadPct?.clientCpu ?? null }]
      : []),
    { figure: 'load client CPU per request (its own CPU)', unit: 'µs/req', value: m.clientCpuUsPerRequest, peer, peerValue: c?.clientCpuUsPerRequest ?? null },
    { figure: 'load client busy (near 100%: the client limits throughput)', unit: '% of 1 CPU', value: 100 * m.clientBusy, peer, peerValue: c ? 100 * c.clientBusy : null },
    { figure: 'certificates issued, measured phase', unit: 'certs', value: m.measured.requests, peer, peerValue: c?.measured.requests ?? null },
  ];
  if (m.measured.errors || (c && c.measured.errors)) {
    rows.push({ figure: 'errors, measured phase', unit: 'calls', value: m.measured.errors, peer, peerValue: c?.measured.errors ?? null });
  }

  notes.push(
    `measured ${state.commit}${state.dirtySrc ? ` with ${state.dirtySrc} modified/new files under src/ (working tree)` : ''}; meshcert's certificate builder: ${state.builder}; ledger: ${state.ledger}`,
    `${CONCURRENCY} callers, one connection each (meshcert: gRPC over TLS, bootstrap token, no rate limit; cfssl: HTTP/1.1 keep-alive, no TLS, which is cfssl serve's own setup); ` +
      `${csrPool} EC P-256 CSRs made beforehand and cycled; ${warmup} warm-up then ${count} measured requests per server`,
    pin
      ? `servers pinned to CPU 0, the load client (its own process) to CPU 1 (taskset); server CPU = Δ(utime+stime) of /proc/PID/stat (all threads) over the measured phase, CLK_TCK ${tck}`
      : 'taskset not found: nothing pinned, server and client share the CPUs',
    `cfssl ${cfsslHow}${c ? `; its certificates: SAN ${c.sample?.san ?? '?'} (hosts overrides the CSR; URI SANs are dropped by cfssl)` : ''}; meshcert's: SAN ${m.sample?.san ?? '?'}, ${m.sample?.chainLength ?? '?'} PEMs in cert_chain`,
    'server CPU busy near 100% means the server was the bottleneck; well below it with a low client CPU means the server waited (I/O, fsync, locks) or lost its CPU to other processes (see the other-processes rows: on a shared machine they make throughput and latency unreliable, CPU per certificate much less so)',
    `server CPU per certificate from /proc/PID/task/*/schedstat (ns, cross-check): meshcert ${m.serverSchedCpuUsPerCert.toFixed(0)} µs, cfssl ${c ? c.serverSchedCpuUsPerCert.toFixed(0) : '–'} µs; hypervisor steal during the runs: ${m.otherLoadPct?.steal.toFixed(1) ?? '–'}% / ${c?.otherLoadPct?.steal.toFixed(1) ?? '–'}% of a CPU`,
  );
  for (const [who, r] of [['meshcert', m], ['cfssl', c]] as const) {
    const o = r?.otherLoadPct;
    // The server's CPU shared at all, or the client's CPU so shared that the client itself may have been short of it.
    if (o && r && (o.serverCpu > 10 || o.clientCpu + 100 * r.clientBusy > 90)) {
      notes.push(
        `WARNING: during the ${who} run other processes used ${o.serverCpu.toFixed(0)}% of the server's CPU and ${o.clientCpu.toFixed(0)}% of the client's: its throughput and latency are understated (CPU per certificate is not); run again on a quiet machine`,
      );
    }
  }
  if (m.measured.capped || c?.measured.capped) notes.push(`the ${capMs / 1000} s cap ended a measured phase early: meshcert ${m.measured.requests}, cfssl ${c?.measured.requests ?? '–'} certificates`);
  if (m.measured.firstError) notes.push(`meshcert first error: ${m.measured.firstError}`);
  if (c?.measured.firstError) notes.push(`cfssl first error: ${c.measured.firstError}`);
  if (mesh.profile) {
    const p = mesh.profile;
    notes.push(
      `meshcert CPU profile (--cpu-prof, measured phase only, ${p.sampledMs.toFixed(0)} ms sampled; profiling inflates CPU): top self time: ` +
        p.functions
          .slice(0, 12)
          .map((f) => `${f.name} ${f.pct.toFixed(1)}%`)
          .join('; '),
      `meshcert's own functions by inclusive time (with what they call): ${p.ours
        .slice(0, 12)
        .map((f) => `${f.name} ${f.pct.toFixed(1)}%`)
        .join('; ')}`,
      `by file/package: ${p.files
        .slice(0, 10)
        .map((f) => `${f.name} ${f.pct.toFixed(1)}%`)
        .join('; ')}`,
    );
  }
  details.meshcert = mesh;
  details.cfssl = cf;
  return { rows, notes, details };
}

export const caBenchmark: Benchmark = {
  name: 'ca',
  description: `issuance through the gRPC API of \`meshcert serve\` (${CONCURRENCY} callers, server on CPU 0), beside cfssl serve's signing API under the same load`,
  run,
};
