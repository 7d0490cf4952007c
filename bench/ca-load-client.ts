/**
 * The load client of `npm run bench -- ca`, run as its own process pinned to the CPU the server does not use
 * (`taskset -c 1`), so that the client's work is never counted as the server's and never competes with it.
 * One process drives one server: `concurrency` callers, each on its own connection (an HTTP/2 channel for
 * meshcert's gRPC API, a keep-alive HTTP/1.1 socket for cfssl), each sending its next CSR as soon as its
 * previous answer arrived. A warm-up of `warmup` requests first (connections, TLS, JIT), then `count` measured
 * requests, between which the server's CPU time is read from /proc/PID/stat (utime + stime: every thread).
 *
 *   node --import reflect-metadata --import tsx bench/ca-load-client.ts SPEC.json   → one JSON line on stdout
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Client, Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { CREATE_CERTIFICATE_PATH, istioCaMethod, type IstioCertificateResponseMessage } from '../src/server/istio-ca-proto.js';

export interface CaLoadSpec {
  target:
    | { kind: 'meshcert'; address: string; rootPem: string; serverName: string; bearerToken: string; validitySeconds: number; expectSpiffeId: string }
    | { kind: 'cfssl'; host: string; port: number; hosts: string[] };
  /** PEM CSRs, cycled through in order (request i sends csrs[i % length]). */
  csrs: string[];
  concurrency: number;
  warmup: number;
  count: number;
  /** Stop starting requests after this long (warm-up and measured phase each), whatever the count. */
  warmupCapMs: number;
  capMs: number;
  /** The server process whose CPU time is read (/proc/PID/stat). */
  serverPid: number;
  clkTck: number;
  /** The CPUs the server and this client are pinned to (null: not pinned), for the other-load figure. */
  serverCpu: number | null;
  clientCpu: number | null;
}

export interface PhaseResult {
  requests: number;
  errors: number;
  firstError?: string;
  wallMs: number;
  perSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** True when the time cap ended the phase before `count` requests. */
  capped: boolean;
}

export interface CaLoadResult {
  warmup: PhaseResult;
  measured: PhaseResult;
  /** Server CPU time (utime + stime, all threads) during the measured phase, µs; and per successful request. */
  serverCpuUs: number;
  serverCpuUsPerCert: number;
  /** Server CPU time ÷ wall time of the measured phase: 1.0 is one core busy all the time. */
  serverBusy: number;
  /** The same from /proc/PID/task/*\/schedstat (ns precision; misses threads that ended during the phase). */
  serverSchedCpuUsPerCert: number;
  serverThreads: number;
  /** /proc/stat field deltas per CPU over the measured phase, and the server's own ticks (diagnostics). */
  cpuTicks: Array<{ cpu: number; user_nice_system_idle_iowait_irq_softirq_steal: number[] }>;
  serverTicks: number;
  /**
   * What else ran during the measured phase, from /proc/stat, in % of one CPU: on the server's CPU (its busy time
   * minus the server's own) and on the client's CPU (minus the client's own), and time stolen by the hypervisor.
   * On a shared machine a large figure here makes throughput and latency (not CPU per certificate) unreliable.
   */
  otherLoadPct: { serverCpu: number; clientCpu: number; steal: number } | null;
  serverRssKiB: number;
  /** This process's CPU time per measured request, µs (the client's own cost). */
  clientCpuUsPerRequest: number;
  /** This process's CPU time ÷ wall time of the measured phase. */
  clientBusy: number;
  /** CLOCK_MONOTONIC µs at the start and end of the measured phase (V8 CPU profiles use the same clock). */
  monotonicUs: { start: number; end: number };
  /** The first certificate received: subject and SANs, to show what each server issued. */
  sample: { subject: string; san: string | undefined; notAfter: string; chainLength: number; bytes: number } | null;
}

interface ProcStat {
  ticks: number;
  threads: number;
  rssPages: number;
}

/** Busy and stolen ticks of each CPU from /proc/stat (busy: everything but idle and iowait; steal: the hypervisor's). */
function readCpus(): Array<{ busy: number; steal: number; fields: number[] }> {
  const out: Array<{ busy: number; steal: number; fields: number[] }> = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const fields = m[2]!.trim().split(/\s+/).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
    out[Number(m[1])] = { busy: user + nice + system + irq + softirq, steal, fields };
  }
  return out;
}

/** ns on CPU of every thread of `pid` (/proc/PID/task/*\/schedstat, field 1): finer than ticks, for a cross-check. */
function readSchedNs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return ns;
}

function readStat(pid: number): ProcStat {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: fields are counted from the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): utime = field 14, stime = 15, num_threads = 20, rss = 24.
  return { ticks: Number(f[11]) + Number(f[12]), threads: Number(f[17]), rssPages: Number(f[21]) };
}

type CallOne = (csr: string) => Promise<string[]>;

function grpcCaller(spec: Extract<CaLoadSpec['target'], { kind: 'meshcert' }>, concurrency: number): { call: (worker: number) => CallOne; close(): void } {
  const method = istioCaMethod();
  const creds = credentials.createSsl(Buffer.from(spec.rootPem));
  const clients: Client[] = [];
  for (let i = 0; i < concurrency; i++) {
    // One connection per caller, as 32 workloads' istio-agents would have: a local subchannel pool per channel.
    clients.push(
      new Client(spec.address, creds, {
        'grpc.ssl_target_name_override': spec.serverName,
        'grpc.default_authority': spec.serverName,
        'grpc.use_local_subchannel_pool': 1,
      }),
    );
  }
  const md = new Metadata();
  md.set('authorization', `Bearer ${spec.bearerToken}`);
  const serialize = (m: { csr: string; subjectId: string; validityDuration: number }): Buffer => Buffer.from(method.requestSerialize(m as never));
  const deserialize = (b: Buffer): IstioCertificateResponseMessage => method.responseDeserialize(b);
  return {
    call: (worker) => {
      const client = clients[worker % clients.length]!;
      return (csr) =>
        new Promise((resolve, reject) => {
          client.makeUnaryRequest(
            CREATE_CERTIFICATE_PATH,
            serialize,
            deserialize,
            { csr, subjectId: '', validityDuration: spec.validitySeconds },
            md,
            { deadline: new Date(Date.now() + 15_000) },
            (err: ServiceError | null, res?: IstioCertificateResponseMessage) => {
              if (err) reject(new Error(`gRPC ${err.code}: ${err.details}`));
              else if (!res?.certChain?.length || !res.certChain[0]!.startsWith('-----BEGIN CERTIFICATE')) reject(new Error('no certificate chain in the response'));
              else resolve(res.certChain);
            },
          );
        });
    },
    close: () => clients.forEach((c) => c.close()),
  };
}

function cfsslCaller(spec: Extract<CaLoadSpec['target'], { kind: 'cfssl' }>, concurrency: number, csrs: string[]): { call: (worker: number) => CallOne; close(): void } {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  // Bodies made beforehand: the client's per-request work stays small.
  const bodies = new Map(csrs.map((csr) => [csr, Buffer.from(JSON.stringify({ certificate_request: csr, hosts: spec.hosts }))] as const));
  const call: CallOne = (csr) =>
    new Promise((resolve, reject) => {
      const body = bodies.get(csr)!;
      const req = httpRequest(
        {
          agent,
          host: spec.host,
          port: spec.port,
          method: 'POST',
          path: '/api/v1/cfssl/sign',
          headers: { 'content-type': 'application/json', 'content-length': body.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
            try {
              const j = JSON.parse(text) as { success?: boolean; result?: { certificate?: string }; errors?: unknown };
              if (!j.success || !j.result?.certificate) return reject(new Error(`cfssl: ${text.slice(0, 200)}`));
              resolve([j.result.certificate]);
            } catch (err) {
              reject(err as Error);
            }
          });
          res.on('error', reject);
        },
      );
      req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(body);
    });
  return { call: () => call, close: () => agent.destroy() };
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)]!;
}

async function phase(
  count: number,
  capMs: number,
  concurrency: number,
  csrs: string[],
  startAt: number,
  caller: (worker: number) => CallOne,
  onFirst: (chain: string[]) => void,
): Promise<PhaseResult> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  let first = true;
  const t0 = performance.now();
  const deadline = t0 + capMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      const call = caller(w);
      while (next < count && performance.now() < deadline) {
        const i = next++;
        const csr = csrs[(startAt + i) % csrs.length]!;
        const s = performance.now();
        try {
          const chain = await call(csr);
          latencies.push(performance.now() - s);
          if (first) {
            first = false;
            onFirst(chain);
          }
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
          // A refusing server answers fast: do not spin on it.
          if (errors > 50 && errors > latencies.length) break;
        }
      }
    }),
  );
  const wallMs = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors,
    ...(firstError ? { firstError } : {}),
    wallMs,
    perSecond: (latencies.length / wallMs) * 1000,
    p50Ms: percentile(latencies, 0.5),
    p90Ms: percentile(latencies, 0.9),
    p99Ms: percentile(latencies, 0.99),
    maxMs: latencies.at(-1) ?? NaN,
    capped: next < count,
  };
}

export async function runCaLoad(spec: CaLoadSpec): Promise<CaLoadResult> {
  const t = spec.target;
  const caller = t.kind === 'meshcert' ? grpcCaller(t, spec.concurrency) : cfsslCaller(t, spec.concurrency, spec.csrs);
  let sample: CaLoadResult['sample'] = null;
  const describe = (chain: string[]): void => {
    const x = new X509Certificate(chain[0]!);
    sample = { subject: (x.subject ?? '').replace(/\n/g, ', '), san: x.subjectAltName, notAfter: x.validTo, chainLength: chain.length, bytes: chain[0]!.length };
    if (t.kind === 'meshcert' && !x.subjectAltName?.includes(t.expectSpiffeId)) throw new Error(`meshcert issued ${x.subjectAltName}, not ${t.expectSpiffeId}`);
  };
  try {
    const warmup = await phase(spec.warmup, spec.warmupCapMs, spec.concurrency, spec.csrs, 0, caller.call, describe);
    if (warmup.requests === 0) throw new Error(`warm-up: no certificate issued (${warmup.errors} errors; first: ${warmup.firstError ?? 'none'})`);
    // Let the warm-up's last answers and any deferred server work settle before the clocks start.
    await new Promise((r) => setTimeout(r, 200));
    const s0 = readStat(spec.serverPid);
    const n0 = readSchedNs(spec.serverPid);
    const cpus0 = readCpus();
    const c0 = process.cpuUsage();
    const m0 = Number(process.hrtime.bigint() / 1000n);
    const measured = await phase(spec.count, spec.capMs, spec.concurrency, spec.csrs, spec.warmup, caller.call, () => undefined);
    const m1 = Number(process.hrtime.bigint() / 1000n);
    const s1 = readStat(spec.serverPid);
    const n1 = readSchedNs(spec.serverPid);
    const cpus1 = readCpus();
    const c = process.cpuUsage(c0);
    const serverCpuUs = ((s1.ticks - s0.ticks) * 1e6) / spec.clkTck;
    const clientCpuUs = c.user + c.system;
    const pctOfWall = (ticks: number): number => (100 * ticks * 1e6) / spec.clkTck / 1000 / measured.wallMs;
    const sc = spec.serverCpu;
    const cc = spec.clientCpu;
    const otherLoadPct =
      sc !== null && cc !== null && cpus0[sc] && cpus1[sc] && cpus0[cc] && cpus1[cc]
        ? {
            serverCpu: Math.max(0, pctOfWall(cpus1[sc].busy - cpus0[sc].busy) - (100 * serverCpuUs) / 1000 / measured.wallMs),
            clientCpu: Math.max(0, pctOfWall(cpus1[cc].busy - cpus0[cc].busy) - (100 * clientCpuUs) / 1000 / measured.wallMs),
            steal: pctOfWall(cpus1.reduce((a, x) => a + x.steal, 0) - cpus0.reduce((a, x) => a + x.steal, 0)),
          }
        : null;
    return {
      warmup,
      measured,
      serverCpuUs,
      serverCpuUsPerCert: measured.requests ? serverCpuUs / measured.requests : NaN,
      serverSchedCpuUsPerCert: measured.requests ? (n1 - n0) / 1000 / measured.requests : NaN,
      serverBusy: serverCpuUs / 1000 / measured.wallMs,
      otherLoadPct,
      cpuTicks: cpus1.map((x, i) => ({ cpu: i, user_nice_system_idle_iowait_irq_softirq_steal: x.fields.slice(0, 8).map((v, k) => v - (cpus0[i]?.fields[k] ?? 0)) })),
      serverTicks: s1.ticks - s0.ticks,
      serverThreads: s1.threads,
      serverRssKiB: s1.rssPages * 4,
      clientCpuUsPerRequest: measured.requests ? clientCpuUs / measured.requests : NaN,
      clientBusy: clientCpuUs / 1000 / measured.wallMs,
      monotonicUs: { start: m0, end: m1 },
      sample,
    };
  } finally {
    caller.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2]) {
  const spec = JSON.parse(readFileSync(process.argv[2], 'utf8')) as CaLoadSpec;
  runCaLoad(spec).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      // grpc-js may keep timers alive for a moment after close(): the result is out, leave now.
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`ca-load-client: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
