/**
 * `npm run bench -- rotation`: a fleet of workload agents rotating short-lived certificates against one real
 * `meshcert serve` process.
 *
 * - `meshcert serve` runs pinned to CPU 0 (`taskset -c 0`), with one bootstrap token per agent (not one-time),
 *   client-certificate renewal on and no rate limit. The fleet (1,000 `Agent`s of src/agent, in this process,
 *   pinned to CPU 1) asks for 60 s certificates, renews at 0.66 of the lifetime with the default jitter (0.1) and
 *   the default backoff; each agent makes a fresh EC P-256 key and CSR per certificate and checks every answer
 *   (key, SPIFFE ID, chain) as the real agent does. Agents have no files and no SDS socket (that cost is local to
 *   a workload and measured by the agent tests), and do not poll --ca-root.
 * - The agents come up evenly over a 40 s ramp (MESHCERT_BENCH_RAMP_SECONDS; 0 starts them all at once), so the
 *   first certificates arrive in a burst as dense as the ramp; the renewal waves that follow show how far the
 *   jitter spreads them. MESHCERT_BENCH_AGENTS and MESHCERT_BENCH_SECONDS change the fleet size and the run.
 * - The fleet shares one CPU where real agents each have their own, so at most 16 attempts run at once in this
 *   process (MESHCERT_BENCH_CONCURRENCY; the Agent's attemptGate): without that, a thousand attempts sharing one
 *   core all miss their deadline together. Latencies exclude the wait for a turn.
 * - Reported: renewals per second sustained (from the first renewal to the end), p50/p99 renewal latency (the whole
 *   attempt: key, CSR, TLS to the CA, issuance, checks), the peak of renewals scheduled in any one second beside
 *   the same certificates' renewal times without jitter (receipt + 0.66 × lifetime), failures by result,
 *   certificates that expired in service (an 'expired' event, or none valid at the end), agents that never got
 *   one, and CPU time per certificate of the CA and per attempt of the fleet.
 * - Default run: 90 s (the first renewal wave and the start of the second); --long: 300 s (about five waves).
 *
 * There is no istio-agent in Debian to run beside it: the comparison is the fleet's own no-jitter counterfactual.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { Agent, type CertificateEvent, type FailureEvent } from '../src/agent/index.js';
import type { BenchOptions, BenchReport, BenchRow, Benchmark } from './run.js';
import { freePort } from './free-port.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const MAIN = join(REPO, 'src', 'cli', 'main.ts');
const SERVER_NAME = 'istiod.istio-system.svc';
const AGENTS = Number(process.env.MESHCERT_BENCH_AGENTS ?? 1000);
const CERT_TTL_MS = 60_000;

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

function clkTck(): number {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  return r.status === 0 && n > 0 ? n : 100;
}

/** utime + stime of a process (all threads), in seconds. */
function cpuSeconds(pid: number, tck: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / tck;
}

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function startServe(dir: string, port: number, pin: boolean, log: (m: string) => void): Promise<{ proc: ChildProcess; address: string; stderr: () => string }> {
  const tokens = Array.from({ length: AGENTS }, (_, i) => ({ name: `agent-${i}`, token: `bench-agent-token-${String(i).padStart(6, '0')}`, identity: `spiffe://cluster.local/ns/bench/sa/agent-${i}` }));
  writeFileSync(join(dir, 'tokens.yaml'), stringify({ tokens }));
  mkdirSync(join(dir, 'tokens'));
  tokens.forEach((t, i) => writeFileSync(join(dir, 'tokens', String(i)), t.token));
  writeFileSync(
    join(dir, 'serve.yaml'),
    stringify({
      trustDomain: 'cluster.local',
      grpc: { listen: `127.0.0.1:${port}`, dnsNames: [SERVER_NAME] },
      issuance: { defaultTtl: '1h', maxTtl: '2h' },
      auth: { bootstrapTokens: join(dir, 'tokens.yaml'), clientCertificates: true },
    }),
  );
  const args = ['--import', 'tsx', MAIN, 'serve', '--data-dir', join(dir, 'data'), '--config', join(dir, 'serve.yaml'), '--log-level', 'warn'];
  log(`starting meshcert serve${pin ? ' (taskset -c 0)' : ''}`);
  const proc = spawn(pin ? 'taskset' : process.execPath, pin ? ['-c', '0', process.execPath, ...args] : args, { cwd: REPO, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = /IstioCertificateService\): (127\.0\.0\.1:\d+)/.exec(out);
    if (m) return { proc, address: m[1]!, stderr: () => err };
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`meshcert serve did not start\n${out}\n${err.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const rotationBenchmark: Benchmark = {
  name: 'rotation',
  description: `${AGENTS.toLocaleString('en-US')} workload agents rotating 60 s certificates against one meshcert serve`,
  async run(options: BenchOptions): Promise<BenchReport> {
    const { log } = options;
    const durationMs = Number(process.env.MESHCERT_BENCH_SECONDS ?? (options.long ? 300 : 90)) * 1000;
    const rampMs = Number(process.env.MESHCERT_BENCH_RAMP_SECONDS ?? 40) * 1000;
    const pin = hasTaskset();
    const tck = clkTck();
    const dir = mkdtempSync(join(tmpdir(), 'meshcert-bench-rotation-'));
    const serve = await startServe(dir, await freePort(), pin, log);
    // Interrupted (Ctrl-C): do not leave the CA running.
    const onSignal = (): void => {
      serve.proc.kill('SIGTERM');
      process.exit(130);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    // The fleet on the other CPU (every thread of this process, the libuv pool included).
    if (pin) spawnSync('taskset', ['-a', '-pc', '1', String(process.pid)], { stdio: 'ignore' });
    const agents: Agent[] = [];
    const certificates: Array<CertificateEvent & { agent: number; initial: boolean }> = [];
    const failures: Array<FailureEvent & { agent: number }> = [];
    const expirations: number[] = [];
    let t0 = 0;
    // The fleet shares one CPU where real agents each have their own: at most GATE attempts run at once here, so
    // that their client-side work (key, CSR, TLS, checks) does not make them all miss their deadline together.
    const gateSize = Number(process.env.MESHCERT_BENCH_CONCURRENCY ?? 16);
    let running = 0;
    const waiting: Array<() => void> = [];
    let maxWaiting = 0;
    const attemptGate = (): Promise<() => void> =>
      new Promise((resolve) => {
        const go = () => {
          running++;
          let released = false;
          resolve(() => {
            if (released) return;
            released = true;
            running--;
            waiting.shift()?.();
          });
        };
        if (running < gateSize) go();
        else {
          waiting.push(go);
          maxWaiting = Math.max(maxWaiting, waiting.length);
        }
      });
    try {
      const caRootFile = join(dir, 'data', 'root-cert.pem');
      const cpuStart = cpuSeconds(serve.proc.pid!, tck);
      const fleetCpuStart = process.cpuUsage();
      t0 = Date.now();
      log(`starting ${AGENTS} agents over ${rampMs / 1000} s (60 s certificates, renew at 0.66, jitter 0.1); running ${durationMs / 1000} s`);
      for (let i = 0; i < AGENTS; i++) {
        const agent = new Agent({
          caAddress: serve.address,
          caRootFile,
          caServerName: SERVER_NAME,
          bootstrapTokenFile: join(dir, 'tokens', String(i)),
          certTtlMs: CERT_TTL_MS,
          allowNoOutput: true,
          caRootPollMs: 0,
          defaultMetrics: false,
          attemptGate,
        });
        let first = true;
        agent.on('certificate', (e: CertificateEvent) => {
          certificates.push({ ...e, agent: i, initial: first });
          first = false;
        });
        agent.on('failure', (e: FailureEvent) => failures.push({ ...e, agent: i }));
        agent.on('expired', () => expirations.push(i));
        agents.push(agent);
      }
      // Agents come up evenly over the ramp, as a fleet being scheduled does (0: all at once).
      await Promise.all(agents.map((a, i) => new Promise((r) => setTimeout(r, (rampMs * i) / AGENTS)).then(() => a.start())));
      let lastReport = Date.now();
      while (Date.now() - t0 < durationMs) {
        await new Promise((r) => setTimeout(r, 1000));
        if (Date.now() - lastReport >= 10_000) {
          lastReport = Date.now();
          const renewals = certificates.filter((c) => !c.initial).length;
          log(`${Math.round((Date.now() - t0) / 1000)} s: ${certificates.length - renewals} initial certificates, ${renewals} renewals, ${failures.length} failures, ${expirations.length} expired`);
        }
      }
      const cpu = cpuSeconds(serve.proc.pid!, tck) - cpuStart;
      const fleetCpu = process.cpuUsage(fleetCpuStart);
      const fleetCpuUs = fleetCpu.user + fleetCpu.system;
      const attempts = certificates.length + failures.length;
      const end = Date.now();
      const invalidAtEnd = agents.map((a, i) => (a.current && a.current.leaf.notAfter.getTime() > end ? -1 : i)).filter((i) => i >= 0);
      const validAtEnd = AGENTS - invalidAtEnd.length;

      const initial = certificates.filter((c) => c.initial);
      const renewals = certificates.filter((c) => !c.initial);
      const perSecond = (list: typeof certificates) => {
        const buckets = new Map<number, number>();
        for (const c of list) {
          const s = Math.floor((c.receivedAt.getTime() - t0) / 1000);
          buckets.set(s, (buckets.get(s) ?? 0) + 1);
        }
        return buckets;
      };
      // Demand, not completions (which the CA's and this process's speed shape): when each certificate's renewal was
      // scheduled, with jitter, beside when it would have been without (receipt + renew-at × lifetime).
      const demand = (at: (c: (typeof certificates)[number]) => number) => {
        const buckets = new Map<number, number>();
        for (const c of certificates) {
          const sec = Math.floor((at(c) - t0) / 1000);
          buckets.set(sec, (buckets.get(sec) ?? 0) + 1);
        }
        return Math.max(0, ...buckets.values());
      };
      const peakScheduled = demand((c) => c.renewalAt.getTime());
      const peakNoJitter = demand((c) => c.receivedAt.getTime() + 0.66 * (c.notAfter.getTime() - c.receivedAt.getTime()));
      const renewalBuckets = perSecond(renewals);
      const initialBuckets = perSecond(initial);
      const peakRenewals = Math.max(0, ...renewalBuckets.values());
      const peakInitial = Math.max(0, ...initialBuckets.values());
      const firstRenewal = renewals.length ? Math.min(...renewals.map((c) => c.receivedAt.getTime())) : end;
      const sustained = renewals.length ? renewals.length / ((end - firstRenewal) / 1000) : null;
      const lat = renewals.map((c) => c.ms).sort((a, b) => a - b);
      const initLat = initial.map((c) => c.ms).sort((a, b) => a - b);
      const initialSpreadS = initial.length ? (Math.max(...initial.map((c) => c.receivedAt.getTime())) - t0) / 1000 : null;
      const renewalSeconds = renewalBuckets.size;
      const byResult = new Map<string, number>();
      for (const f of failures) byResult.set(f.result, (byResult.get(f.result) ?? 0) + 1);
      // An agent whose certificate expired before a new one came, or that had one and holds no valid one at the end.
      const served = new Set(certificates.map((c) => c.agent));
      const expiredInService = new Set([...expirations, ...invalidAtEnd.filter((i) => served.has(i))]).size;
      const neverServed = AGENTS - served.size;

      const rows: BenchRow[] = [
        { figure: 'agents with a valid certificate at the end', unit: 'agents', value: validAtEnd, peer: `of ${AGENTS}`, peerValue: AGENTS, ratio: validAtEnd / AGENTS },
        { figure: `initial certificates (agents started over ${rampMs / 1000} s)`, unit: 'certs', value: initial.length },
        { figure: 'time until every agent had its first certificate', unit: 's', value: initialSpreadS },
        { figure: 'initial issuance latency p50', unit: 'ms', value: percentile(initLat, 50) },
        { figure: 'initial issuance latency p99', unit: 'ms', value: percentile(initLat, 99) },
        { figure: 'renewals', unit: 'certs', value: renewals.length },
        { figure: 'renewals per second sustained (first renewal to end)', unit: '/s', value: sustained },
        { figure: 'renewal latency p50', unit: 'ms', value: percentile(lat, 50) },
        { figure: 'renewal latency p99', unit: 'ms', value: percentile(lat, 99) },
        { figure: 'renewal latency max', unit: 'ms', value: lat.length ? lat[lat.length - 1]! : null },
        {
          figure: 'peak renewals scheduled in one second (jitter 0.1)',
          unit: '/s',
          value: peakScheduled,
          peer: 'the same certificates without jitter',
          peerValue: peakNoJitter,
          ratio: peakNoJitter ? peakScheduled / peakNoJitter : null,
        },
        { figure: 'peak renewals completed in one second', unit: '/s', value: peakRenewals, peer: 'peak initial issuances in one second', peerValue: peakInitial },
        { figure: 'seconds with at least one renewal', unit: 's', value: renewalSeconds },
        { figure: 'failed attempts', unit: 'attempts', value: failures.length },
        { figure: 'certificates expired in service', unit: 'agents', value: expiredInService },
        { figure: 'agents that never got a certificate', unit: 'agents', value: neverServed },
        { figure: 'fleet CPU per attempt (this process, all agents)', unit: 'µs', value: attempts ? (fleetCpuUs / attempts) : null, cpuUsPerOp: attempts ? fleetCpuUs / attempts : null },
        { figure: 'CA CPU per certificate (whole run)', unit: 'µs', value: certificates.length ? (cpu * 1e6) / certificates.length : null, cpuUsPerOp: certificates.length ? (cpu * 1e6) / certificates.length : null },
      ];
      const notes = [
        `${AGENTS} agents in one process${pin ? ' pinned to CPU 1' : ''}, started over ${rampMs / 1000} s; meshcert serve${pin ? ' pinned to CPU 0' : ''}; run ${durationMs / 1000} s; load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}; target: no failure and no certificate expiring in service`,
        `failures by result: ${byResult.size ? [...byResult].map(([k, v]) => `${k} ${v}`).join(', ') : 'none'}${failures.length ? `; first: ${failures[0]!.error.message}` : ''}`,
        `renewal spread: renewals completed in ${renewalSeconds} distinct seconds; every agent had its first certificate after ${initialSpreadS?.toFixed(1)} s`,
        `CA CPU ${cpu.toFixed(1)} s for ${certificates.length} certificates in ${((end - t0) / 1000).toFixed(0)} s`,
        `simulation: at most ${gateSize} attempts at once in this process (MESHCERT_BENCH_CONCURRENCY); at most ${maxWaiting} agents were waiting for their turn; latencies exclude that wait`,
      ];
      return {
        rows,
        notes,
        details: {
          renewalsPerSecond: Object.fromEntries([...renewalBuckets].sort((a, b) => a[0] - b[0])),
          initialPerSecond: Object.fromEntries([...initialBuckets].sort((a, b) => a[0] - b[0])),
          failures: failures.slice(0, 20).map((f) => ({ agent: f.agent, result: f.result, message: f.error.message })),
        },
      };
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await Promise.all(agents.map((a) => a.stop()));
      serve.proc.kill('SIGTERM');
      await new Promise((r) => (serve.proc.exitCode !== null ? r(null) : serve.proc.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
