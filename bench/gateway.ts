/**
 * `npm run bench -- gateway`: `meshcert gateway` beside nginx (Debian) in the same run, same certificate (EC P-256
 * leaf + intermediate), same staple, same load client:
 * - TLS 1.3 full handshakes (new connection each, no resumption, connection closed after the handshake), without
 *   and with OCSP stapling (the client asks for a staple and both servers staple the same DER response);
 * - HTTP/1.1 requests over kept-alive TLS connections, each server proxying to the same upstream (a second nginx
 *   returning 200 "ok") over kept-alive upstream connections.
 * The server under test runs on CPU 0, the load client (bench/gateway-load-client.ts) and the upstream on CPU 1.
 * Server CPU per operation = utime+stime of the server's processes (/proc/PID/stat; nginx: master + worker) over
 * the window ÷ operations. A bare Node TLS server (tls.createServer, no ClientHello pre-read, no stapling logic)
 * is measured too, and a bare Node proxy (https server piping to node:http's keep-alive agent) per kept-alive
 * request, to tell the gateway's own overhead from Node's. Cases alternate over rounds; each keeps its
 * best round (least CPU per op), so a burst of load elsewhere on the machine does not decide the ratio.
 *
 * Standalone: node --import reflect-metadata --import tsx bench/gateway.ts [--long]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { gatewayPki, makeStaple, manifestYaml } from '../test/sds/secret-fixtures.js';
import type { TlsLoadResult, TlsLoadSpec } from './gateway-load-client.js';
import { freePort } from './free-port.js';
import { cpuProfArgs, type BenchOptions, type BenchReport, type BenchRow, type Benchmark } from './run.js';
import { runTool as exec } from './run-tool.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const LOAD_CLIENT = join(REPO, 'bench', 'gateway-load-client.ts');
const SERVER_CPU = '0';
const CLIENT_CPU = '1';
const TICKS_PER_SECOND = 100;
const HANDSHAKE_CONNECTIONS = 8;
const KEEPALIVE_CONNECTIONS = 16;
const HOST = 'bench.example.test';

type CaseName = 'handshake' | 'handshake+staple' | 'keepalive';
interface Server {
  name: string;
  port: number;
  pids: () => number[];
  child: ChildProcess;
  cases: CaseName[];
}
interface Measurement {
  server: string;
  case: CaseName;
  load: TlsLoadResult;
  cpuUsPerOp: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND) * 1e6;
  } catch {
    return 0;
  }
}

/** A process and its children (nginx: master + worker). */
function familyOf(pid: number): number[] {
  const out = [pid];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

async function waitForPort(port: number, child: ChildProcess, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode})`);
    if ((await exec('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`])).code === 0) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

function nginxConf(dir: string, body: string): string {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${dir}/${t};`).join(' ');
  const file = join(dir, 'nginx.conf');
  writeFileSync(
    file,
    `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/logs/error.log warn;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n  ${temps}\n${body}\n}\n`,
  );
  return file;
}

async function startNginx(name: string, dir: string, body: string, cpu: string, port: number): Promise<ChildProcess> {
  const conf = nginxConf(dir, body);
  const child = spawn('taskset', ['-c', cpu, 'nginx', '-c', conf, '-p', `${dir}/`, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await waitForPort(port, child);
  } catch (e) {
    throw new Error(`${name}: ${String(e)} ${err}`);
  }
  return child;
}

async function load(dir: string, spec: TlsLoadSpec): Promise<TlsLoadResult> {
  const file = join(dir, `spec-${Date.now()}-${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(spec));
  const r = await exec('taskset', ['-c', CLIENT_CPU, process.execPath, '--import', 'tsx', LOAD_CLIENT, file]);
  if (r.code !== 0) throw new Error(`load client failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as TlsLoadResult;
}

async function measure(dir: string, s: Server, c: CaseName, ca: string, durationMs: number): Promise<Measurement> {
  const spec: TlsLoadSpec = {
    mode: c === 'keepalive' ? 'keepalive' : 'handshake',
    host: '127.0.0.1',
    port: s.port,
    servername: HOST,
    ca,
    requestOCSP: c === 'handshake+staple',
    connections: c === 'keepalive' ? KEEPALIVE_CONNECTIONS : HANDSHAKE_CONNECTIONS,
    durationMs,
    path: '/',
  };
  // Warm-up (JIT, upstream keep-alive pool), not measured.
  await load(dir, { ...spec, durationMs: Math.min(1000, durationMs) });
  const pids = s.pids();
  const before = pids.reduce((a, p) => a + cpuOf(p), 0);
  const res = await load(dir, spec);
  const after = pids.reduce((a, p) => a + cpuOf(p), 0);
  return { server: s.name, case: c, load: res, cpuUsPerOp: res.ops > 0 ? (after - before) / res.ops : NaN };
}

/** The gateway's listener alone, from the build: argv SECRETS PORT. */
const LISTENER_CHILD = `
import '@REPO@/node_modules/reflect-metadata/Reflect.js';
import { SecretSource } from '@DIST@/secrets/index.js';
import { SecretsCredentialStore, GatewayMetrics, PortListener, StaplingCache } from '@DIST@/gateway/index.js';
const [secrets, p] = process.argv.slice(2);
const port = Number(p);
const store = new SecretsCredentialStore(SecretSource.open({ paths: [secrets], watch: false }));
const l = new PortListener(
  { port, bind: '127.0.0.1', servers: [{ id: 'bench/0', gateway: 'bench', port, protocol: 'HTTPS', hosts: ['${HOST}'], mode: 'SIMPLE', credentialName: 'bench-cred', tls: { minProtocolVersion: 'TLSV1_3' }, onlyVerifyLeafCertCrl: false, alpn: ['h2', 'http/1.1'] }] },
  { store, stapling: new StaplingCache(), metrics: new GatewayMetrics(), handler: { handle: (s) => void s.on('error', () => {}) }, handshakeTimeoutMs: 10000, connectTimeoutMs: 1000, idleTimeoutMs: 0, routeTcp: () => ({ error: 'none' }) },
);
await l.listen(port);
`;

const BARE_NODE = `
import { createServer } from 'node:tls';
import { readFileSync } from 'node:fs';
const [key, cert, staple, port] = process.argv.slice(2);
const der = readFileSync(staple);
const s = createServer({ key: readFileSync(key), cert: readFileSync(cert), minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] }, (c) => { c.on('error', () => {}); c.on('data', () => c.write('HTTP/1.1 200 OK\\r\\ncontent-length: 3\\r\\n\\r\\nok\\n')); });
s.on('OCSPRequest', (_c, _i, cb) => cb(null, der));
s.on('tlsClientError', () => {});
s.listen(Number(port), '127.0.0.1');
`;

/**
 * The least a Node proxy can do per kept-alive request: an https server whose handler forwards to the upstream over
 * node:http's keep-alive agent and pipes the answer back. No routing, no headers rewritten, no logs, no metrics.
 * argv: KEY CERT PORT UPSTREAM_PORT.
 */
const BARE_PROXY = `
import { createServer } from 'node:https';
import { Agent, request } from 'node:http';
import { readFileSync } from 'node:fs';
const [key, cert, port, upPort] = process.argv.slice(2);
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const fail = (res) => { if (!res.headersSent) res.writeHead(502); res.end(); };
const s = createServer({ key: readFileSync(key), cert: readFileSync(cert), minVersion: 'TLSv1.3', keepAliveTimeout: 65000 }, (req, res) => {
  const up = request({ agent, host: '127.0.0.1', port: Number(upPort), method: req.method, path: req.url, headers: req.headers }, (r) => { res.writeHead(r.statusCode, r.headers); r.pipe(res); });
  up.on('error', () => fail(res));
  req.pipe(up);
});
s.on('tlsClientError', () => {});
s.listen(Number(port), '127.0.0.1');
// An orderly exit, so that --cpu-prof writes its profile.
process.on('SIGTERM', () => process.exit(0));
`;

async function run(options: BenchOptions): Promise<BenchReport> {
  const { log } = options;
  const notes: string[] = [];
  const rows: BenchRow[] = [];
  if ((await exec('nginx', ['-v'])).code !== 0) {
    return { rows, notes: ['nginx is not installed: apt-get install -y nginx (bench only)'] };
  }
  const dir = mkdtempSync(join(tmpdir(), 'meshcert-bench-gateway-'));
  const servers: Server[] = [];
  const children: ChildProcess[] = [];
  // Interrupted (Ctrl-C, kill): stop the servers it started before going, never leave them behind.
  const onSignal = (sig: NodeJS.Signals) => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const pki = await gatewayPki({ dnsName: HOST });
    const staple = await makeStaple(pki.ca, pki.leaf.cert, { nextUpdate: new Date(Date.now() + 24 * 3600_000) });
    const files = { cert: join(dir, 'leaf.pem'), key: join(dir, 'leaf.key'), staple: join(dir, 'leaf.ocsp.der'), ca: join(dir, 'root.pem') };
    writeFileSync(files.cert, pki.leaf.chainPem);
    writeFileSync(files.key, pki.leaf.keyPem, { mode: 0o600 });
    writeFileSync(files.staple, staple);
    writeFileSync(files.ca, pki.root.cert.pem);
    const caPem = pki.root.cert.pem;

    // The upstream both proxies forward to, on the client's CPU.
    const upPort = await freePort();
    children.push(await startNginx('upstream nginx', join(dir, 'up'), `  server { listen 127.0.0.1:${upPort}; keepalive_requests 1000000; location / { default_type text/plain; return 200 "ok\\n"; } }`, CLIENT_CPU, upPort));

    // nginx as the TLS proxy.
    const ngPort = await freePort();
    const ngx = await startNginx(
      'nginx',
      join(dir, 'ngx'),
      `  upstream up { server 127.0.0.1:${upPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${ngPort} ssl;
    ssl_certificate ${files.cert};
    ssl_certificate_key ${files.key};
    ssl_protocols TLSv1.3;
    ssl_session_cache off; ssl_session_tickets off;
    ssl_stapling on; ssl_stapling_file ${files.staple};
    keepalive_timeout 65; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }`,
      SERVER_CPU,
      ngPort,
    );
    children.push(ngx);
    servers.push({ name: 'nginx', port: ngPort, child: ngx, pids: () => familyOf(ngx.pid!), cases: ['handshake', 'handshake+staple', 'keepalive'] });

    // meshcert gateway, from the build when there is one.
    const gwDir = join(dir, 'gw');
    mkdirSync(join(gwDir, 'secrets'), { recursive: true });
    writeFileSync(join(gwDir, 'secrets', 'bench.yaml'), manifestYaml({ name: 'bench-cred', data: { 'tls.crt': pki.leaf.chainPem, 'tls.key': pki.leaf.keyPem, 'tls.ocsp-staple': staple } }));
    const gwPort = await freePort();
    const gwFile = join(gwDir, 'gateway.yaml');
    writeFileSync(
      gwFile,
      [
        { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'bench' }, spec: { servers: [{ port: { number: gwPort, protocol: 'HTTPS' }, bind: '127.0.0.1', hosts: [HOST], tls: { mode: 'SIMPLE', credentialName: 'bench-cred', minProtocolVersion: 'TLSV1_3' } }] } },
        { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'bench' }, spec: { hosts: [HOST], gateways: ['bench'], http: [{ route: [{ destination: { host: 'up', port: { number: upPort } } }] }] } },
        { apiVersion: 'meshcert.dev/v1', kind: 'GatewayOptions', spec: { upstreams: { up: `127.0.0.1:${upPort}` }, accessLog: { enabled: false } } },
      ]
        .map((d) => stringify(d))
        .join('---\n'),
    );
    const built = existsSync(join(REPO, 'dist', 'cli', 'main.js'));
    const gwArgs = built ? [join(REPO, 'bin', 'meshcert')] : ['--import', 'tsx', join(REPO, 'src', 'cli', 'main.ts')];
    const gw = spawn('taskset', ['-c', SERVER_CPU, process.execPath, ...cpuProfArgs(options), ...gwArgs, 'gateway', '-f', gwFile, '--secrets', join(gwDir, 'secrets'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let gwErr = '';
    gw.stderr!.on('data', (d: Buffer) => (gwErr += d.toString()));
    children.push(gw);
    try {
      await waitForPort(gwPort, gw);
    } catch (e) {
      throw new Error(`meshcert gateway: ${String(e)}\n${gwErr}`);
    }
    // taskset execs node in place: the pid is the gateway's.
    servers.push({ name: 'meshcert gateway', port: gwPort, child: gw, pids: () => [gw.pid!], cases: ['handshake', 'handshake+staple', 'keepalive'] });
    notes.push(`meshcert gateway ran from ${built ? 'the build (dist/)' : 'the sources through tsx'}`);

    // A bare Node TLS server: Node's own cost per handshake, for reference.
    const barePort = await freePort();
    const bareFile = join(dir, 'bare.mjs');
    writeFileSync(bareFile, BARE_NODE);
    const bare = spawn('taskset', ['-c', SERVER_CPU, process.execPath, bareFile, files.key, files.cert, files.staple, String(barePort)], { stdio: 'ignore' });
    children.push(bare);
    await waitForPort(barePort, bare);
    servers.push({ name: 'bare node tls', port: barePort, child: bare, pids: () => [bare.pid!], cases: ['handshake', 'handshake+staple'] });

    // A bare Node proxy: Node's own floor per kept-alive proxied request.
    const bareProxyFile = join(dir, 'bare-proxy.mjs');
    writeFileSync(bareProxyFile, BARE_PROXY);
    const bareProxyPort = await freePort();
    const bareProxy = spawn('taskset', ['-c', SERVER_CPU, process.execPath, ...cpuProfArgs(options), bareProxyFile, files.key, files.cert, String(bareProxyPort), String(upPort)], { stdio: 'ignore' });
    children.push(bareProxy);
    await waitForPort(bareProxyPort, bareProxy);
    servers.push({ name: 'bare node proxy', port: bareProxyPort, child: bareProxy, pids: () => [bareProxy.pid!], cases: ['keepalive'] });

    // The gateway's listener alone (ClientHello pre-read, server selection, stapling verdict, metrics; no proxy).
    const lPort = await freePort();
    // From the build when there is one: tsx turns source maps on, which makes every Error (a reset socket) costly.
    const lArgs = built
      ? [join(dir, 'listener.mjs')]
      : ['--import', 'reflect-metadata', '--import', 'tsx', fileURLToPath(import.meta.url), '--listener-child'];
    if (built) writeFileSync(lArgs[0]!, LISTENER_CHILD.replaceAll('@DIST@', join(REPO, 'dist')).replaceAll('@REPO@/', REPO));
    const lChild = spawn('taskset', ['-c', SERVER_CPU, process.execPath, ...lArgs, join(gwDir, 'secrets'), String(lPort)], { stdio: 'ignore' });
    children.push(lChild);
    await waitForPort(lPort, lChild, 60_000);
    servers.push({ name: 'gateway listener only', port: lPort, child: lChild, pids: () => [lChild.pid!], cases: ['handshake', 'handshake+staple'] });

    const durationMs = options.long ? 15_000 : 4_000;
    const rounds = options.long ? 3 : 2;
    log(`servers up (nginx ${ngPort}, gateway ${gwPort}, bare node ${barePort}, upstream ${upPort}); ${rounds} rounds of ${durationMs / 1000} s per case`);
    const all: Measurement[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const c of ['handshake', 'handshake+staple', 'keepalive'] as CaseName[]) {
        for (const s of servers) {
          if (!s.cases.includes(c)) continue;
          const m = await measure(dir, s, c, caPem, durationMs);
          log(`round ${round}: ${s.name} ${c}: ${m.load.perSecond.toFixed(0)}/s, ${m.cpuUsPerOp.toFixed(1)} µs CPU/op, p99 ${(m.load.p99Us / 1000).toFixed(2)} ms, errors ${m.load.errors}${m.load.firstError ? ` (${m.load.firstError})` : ''}, stapled ${m.load.stapled}`);
          all.push(m);
        }
      }
    }
    const best = (server: string, c: CaseName): Measurement | undefined =>
      all.filter((m) => m.server === server && m.case === c && m.load.ops > 0).sort((a, b) => a.cpuUsPerOp - b.cpuUsPerOp)[0];
    const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 && Number.isFinite(a) ? a / b : null);
    for (const c of ['handshake', 'handshake+staple', 'keepalive'] as CaseName[]) {
      const ng = best('nginx', c);
      for (const name of ['meshcert gateway', 'gateway listener only', 'bare node tls', 'bare node proxy']) {
        const m = best(name, c);
        if (!m) continue;
        const unit = c === 'keepalive' ? 'µs CPU/request' : 'µs CPU/handshake';
        rows.push({ figure: `${name}: ${c} server CPU`, unit, value: m.cpuUsPerOp, peer: `nginx ${c}`, peerValue: ng?.cpuUsPerOp ?? null, ratio: ratio(m.cpuUsPerOp, ng?.cpuUsPerOp), cpuUsPerOp: m.cpuUsPerOp });
        rows.push({ figure: `${name}: ${c} throughput (client-bound)`, unit: '/s', value: m.load.perSecond, peer: `nginx ${c}`, peerValue: ng?.load.perSecond ?? null, ratio: ratio(m.load.perSecond, ng?.load.perSecond) });
        rows.push({ figure: `${name}: ${c} p99 latency`, unit: 'ms', value: m.load.p99Us / 1000, peer: `nginx ${c}`, peerValue: ng ? ng.load.p99Us / 1000 : null, ratio: ratio(m.load.p99Us, ng?.load.p99Us) });
      }
    }
    const g = (c: CaseName) => best('meshcert gateway', c)?.cpuUsPerOp;
    const n = (c: CaseName) => best('nginx', c)?.cpuUsPerOp;
    const hs = ratio(g('handshake'), n('handshake'));
    const ka = ratio(g('keepalive'), n('keepalive'));
    const stapleCost = ratio(g('handshake+staple'), g('handshake'));
    const stapled = best('meshcert gateway', 'handshake+staple')?.load.stapled ?? 0;
    notes.push(`target: gateway CPU per full TLS 1.3 handshake ≤ 1.2× nginx's: ${hs === null ? 'n/a' : `${hs.toFixed(2)}× (${hs <= 1.2 ? 'met' : 'NOT met'})`}`);
    notes.push(`target: gateway CPU per kept-alive request ≤ 1.5× nginx's (both proxying to the same upstream): ${ka === null ? 'n/a' : `${ka.toFixed(2)}× (${ka <= 1.5 ? 'met' : 'NOT met'})`}`);
    notes.push(`target: stapling costs < 5% per handshake: gateway with/without = ${stapleCost === null ? 'n/a' : `${((stapleCost - 1) * 100).toFixed(1)}% (${stapleCost < 1.05 ? 'met' : 'NOT met'})`}; handshakes stapled in that run: ${stapled}`);
    const bareHs = ratio(best('bare node tls', 'handshake')?.cpuUsPerOp, n('handshake'));
    const lisHs = ratio(best('gateway listener only', 'handshake')?.cpuUsPerOp, n('handshake'));
    if (bareHs !== null && hs !== null) {
      notes.push(
        `per handshake, vs nginx: bare Node TLS server ${bareHs.toFixed(2)}×, the gateway's listener alone (ClientHello pre-read, selection, stapling verdict, metrics) ${lisHs === null ? 'n/a' : `${lisHs.toFixed(2)}×`}, the whole gateway (+ the HTTP proxy taking the connection) ${hs.toFixed(2)}×`,
      );
    }
    const bareKa = ratio(best('bare node proxy', 'keepalive')?.cpuUsPerOp, n('keepalive'));
    notes.push(`per kept-alive request, vs nginx: a bare Node proxy (https server piping to node:http's keep-alive agent, nothing else) ${bareKa?.toFixed(2) ?? 'n/a'}×, the gateway ${ka?.toFixed(2) ?? 'n/a'}×`);
    notes.push(`server on CPU ${SERVER_CPU}, load client and upstream on CPU ${CLIENT_CPU}; ${HANDSHAKE_CONNECTIONS} handshake loops, ${KEEPALIVE_CONNECTIONS} kept-alive connections; best of ${rounds} rounds per case`);
    return { rows, notes, details: { measurements: all } };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const c of children.reverse()) await stop(c, 'SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

export const gatewayBenchmark: Benchmark = {
  name: 'gateway',
  description: 'TLS gateway vs nginx: server CPU per full TLS 1.3 handshake (with and without stapling) and per kept-alive proxied request',
  run,
};

/** `bench/gateway.ts --listener-child SECRETS PORT`: the gateway's listener alone (no HTTP proxy behind it). */
async function listenerChild(secrets: string, port: number): Promise<void> {
  const { SecretSource } = await import('../src/secrets/index.js');
  const { SecretsCredentialStore, GatewayMetrics, PortListener, StaplingCache } = await import('../src/gateway/index.js');
  const store = new SecretsCredentialStore(SecretSource.open({ paths: [secrets], watch: false }));
  const l = new PortListener(
    {
      port,
      bind: '127.0.0.1',
      servers: [{ id: 'bench/0', gateway: 'bench', port, protocol: 'HTTPS', hosts: [HOST], mode: 'SIMPLE', credentialName: 'bench-cred', tls: { minProtocolVersion: 'TLSV1_3' }, onlyVerifyLeafCertCrl: false, alpn: ['h2', 'http/1.1'] }],
    },
    {
      store,
      stapling: new StaplingCache(),
      metrics: new GatewayMetrics(),
      handler: { handle: (sock) => void sock.on('error', () => undefined) },
      handshakeTimeoutMs: 10_000,
      connectTimeoutMs: 1000,
      idleTimeoutMs: 0,
      routeTcp: () => ({ error: 'none' }),
    },
  );
  await l.listen(port);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2] === '--listener-child') {
  await listenerChild(process.argv[3]!, Number(process.argv[4]));
} else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const report = await run({ long: process.argv.includes('--long'), log: (m) => console.error(`[gateway] ${m}`) });
  const { renderTable } = await import('./run.js');
  console.log(renderTable(report.rows));
  console.log(report.notes.map((x) => `- ${x}`).join('\n'));
}
