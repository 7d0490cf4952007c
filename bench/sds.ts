/**
 * `npm run bench -- sds`: one meshcert SDS server (its own process, Unix socket, a folder with one gateway secret)
 * with 1,000 and then 10,000 subscribed StreamSecrets streams (100 per HTTP/2 connection, as many connections as
 * needed, like that many Envoys' SDS streams): the time from a secret file change to the last client's ACK, and the
 * server's memory per stream (RSS and JS heap after GC, before and after the streams open). The targets:
 * 10,000 streams updated in under 2 s, under 20 KiB per stream. There is no other SDS server in Debian to run
 * beside it, so the peer column holds the target; the server's CPU time per push is measured in the server process.
 *
 * The clients run in this process, the server in a child (pinned to CPU 0 when `taskset` exists, the clients on
 * CPU 1), so that the clients' work is not counted as the server's. The clients decode each distinct response
 * once (all streams of a round get the same bytes), so 10,000 clients do not cost 10,000 protobuf decodes here.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import { SecretSource } from '../src/secrets/index.js';
import {
  GatewaySecretProvider,
  SECRET_TYPE_URL,
  STREAM_SECRETS_PATH,
  SdsServer,
  sdsProtos,
  type DiscoveryRequestMessage,
} from '../src/sds/index.js';
import { gatewayPki, makeStaple, manifestYaml, tlsData, writeAtomic, type GatewayPki } from '../test/sds/secret-fixtures.js';
import type { BenchOptions, BenchReport, BenchRow, Benchmark } from './run.js';

const STREAMS_PER_CONNECTION = 100;
const NAME = 'kubernetes://ingress-cert';
const TARGET_PUSH_MS = 2000;
const TARGET_BYTES_PER_STREAM = 20 * 1024;

interface ServerMemory {
  rss: number;
  heapUsed: number;
  external: number;
  cpuUs: number;
  streams: number;
}

/** The server side, run as `node … bench/sds.ts --sds-child DIR SOCKET` with an IPC channel. */
async function child(dir: string, socket: string): Promise<void> {
  const source = SecretSource.open({ paths: [dir] });
  const server = await SdsServer.start({ provider: new GatewaySecretProvider(source), uds: socket });
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'mem') {
      gc?.();
      gc?.();
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      process.send!({ rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, cpuUs: cpu.user + cpu.system, streams: server.streams } satisfies ServerMemory);
    } else if (m.cmd === 'stop') {
      void server.close(200).then(() => {
        source.close();
        process.exit(0);
      });
    }
  });
  process.send!({ ready: true });
}

function ask(proc: ChildProcess): Promise<ServerMemory> {
  return new Promise((resolve) => {
    proc.once('message', (m) => resolve(m as ServerMemory));
    proc.send({ cmd: 'mem' });
  });
}

function hasTaskset(): boolean {
  return spawnSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' }).status === 0;
}

async function startChild(dir: string, socket: string, pin: boolean): Promise<ChildProcess> {
  const self = fileURLToPath(import.meta.url);
  const args = ['--expose-gc', '--import', 'reflect-metadata', '--import', 'tsx', self, '--sds-child', dir, socket];
  const proc = pin ? spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }) : spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    proc.once('message', () => resolve());
    proc.once('exit', (code) => reject(new Error(`the SDS server process exited with ${code}`)));
  });
  return proc;
}

interface Fleet {
  /** Resolves when every stream has ACKed a response for which `accept(serial)` holds; returns when the last one did. */
  allAcked(accept: (chainDigest: string) => boolean, timeoutMs: number): Promise<number>;
  close(): void;
}

/** N streams over N/100 connections, each ACKing every response at once, as Envoy does. */
function openFleet(socket: string, n: number): Fleet {
  const m = sdsProtos().stream;
  const decoded = new Map<string, { versionInfo: string; nonce: string; chain: string }>();
  // One decode per distinct response: every stream of a round receives the same bytes.
  const deserialize = (buf: Buffer) => {
    const key = createHash('sha1').update(buf).digest('hex');
    let d = decoded.get(key);
    if (!d) {
      const r = m.responseDeserialize(buf);
      const res = r.resources?.[0] as { tlsCertificate?: { certificateChain?: { inlineBytes?: Buffer } } } | undefined;
      const chain = createHash('sha1').update(res?.tlsCertificate?.certificateChain?.inlineBytes ?? Buffer.alloc(0)).digest('hex');
      decoded.set(key, (d = { versionInfo: r.versionInfo ?? '', nonce: r.nonce ?? '', chain }));
    }
    return d;
  };
  const clients: Client[] = [];
  const calls: Array<ClientDuplexStream<DiscoveryRequestMessage, ReturnType<typeof deserialize>>> = [];
  const last: Array<{ chain: string; at: number } | null> = new Array(n).fill(null);
  let waiter: (() => void) | null = null;
  for (let i = 0; i < n; i++) {
    if (i % STREAMS_PER_CONNECTION === 0) {
      clients.push(new Client(`unix:${socket}`, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
    }
    const call = clients.at(-1)!.makeBidiStreamRequest(STREAM_SECRETS_PATH, m.requestSerialize, deserialize);
    const idx = i;
    call.on('data', (r: ReturnType<typeof deserialize>) => {
      call.write({ versionInfo: r.versionInfo, resourceNames: [NAME], typeUrl: SECRET_TYPE_URL, responseNonce: r.nonce });
      last[idx] = { chain: r.chain, at: performance.now() };
      waiter?.();
    });
    call.on('error', () => undefined);
    call.write({ node: { id: `router~bench-${i}` }, resourceNames: [NAME], typeUrl: SECRET_TYPE_URL, responseNonce: '' });
    calls.push(call);
  }
  return {
    allAcked(accept, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          let latest = 0;
          for (const l of last) {
            if (!l || !accept(l.chain)) return;
            latest = Math.max(latest, l.at);
          }
          waiter = null;
          clearTimeout(timer);
          resolve(latest);
        };
        const timer = setTimeout(() => {
          waiter = null;
          const done = last.filter((l) => l && accept(l.chain)).length;
          reject(new Error(`only ${done} of ${n} streams ACKed within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = check;
        check();
      });
    },
    close() {
      for (const c of calls) c.cancel();
      for (const c of clients) c.close();
    },
  };
}

function chainDigest(p: GatewayPki): string {
  return createHash('sha1').update(p.leaf.chainPem).digest('hex');
}

async function run(options: BenchOptions): Promise<BenchReport> {
  const sizes = options.long ? [1000, 10_000, 20_000] : [1000, 10_000];
  const pin = hasTaskset();
  if (pin) spawnSync('taskset', ['-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
  const work = mkdtempSync(join(tmpdir(), 'meshcert-bench-sds-'));
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  const details: Record<string, unknown> = { streamsPerConnection: STREAMS_PER_CONNECTION, pinned: pin, runs: [] as unknown[] };
  try {
    const a = await gatewayPki({ dnsName: 'ingress.example.com' });
    const b = await gatewayPki({ dnsName: 'ingress.example.com' });
    const secretOf = async (p: GatewayPki) => manifestYaml({ name: 'ingress-cert', data: tlsData(p, { 'tls.ocsp-staple': await makeStaple(p.ca, p.leaf.cert) }) });
    const versions = [await secretOf(a), await secretOf(b)];
    const digests = [chainDigest(a), chainDigest(b)];
    for (const n of sizes) {
      const dir = join(work, `secrets-${n}`);
      mkdirSync(dir);
      writeAtomic(join(dir, 'ingress.yaml'), versions[0]!);
      const socket = join(work, `sds-${n}.sock`);
      const proc = await startChild(dir, socket, pin);
      try {
        const base = await ask(proc);
        const t0 = performance.now();
        const fleet = openFleet(socket, n);
        const initialLast = await fleet.allAcked((d) => d === digests[0], 120_000);
        const initialMs = initialLast - t0;
        await new Promise((r) => setTimeout(r, 500)); // let the last ACKs land before measuring
        const open = await ask(proc);
        const rssPerStream = (open.rss - base.rss) / n;
        const heapPerStream = (open.heapUsed + open.external - base.heapUsed - base.external) / n;
        options.log(`${n} streams: initial fetch ${initialMs.toFixed(0)} ms; server RSS +${(rssPerStream / 1024).toFixed(1)} KiB/stream`);
        const pushes: number[] = [];
        const cpus: number[] = [];
        const rounds = options.long ? 5 : 3;
        for (let r = 0; r < rounds; r++) {
          const next = (r + 1) % 2;
          const before = await ask(proc);
          const tw = performance.now();
          writeAtomic(join(dir, 'ingress.yaml'), versions[next]!);
          const lastAck = await fleet.allAcked((d) => d === digests[next], 60_000);
          pushes.push(lastAck - tw);
          await new Promise((res) => setTimeout(res, 300));
          const after = await ask(proc);
          cpus.push(after.cpuUs - before.cpuUs);
          options.log(`${n} streams: change → last ACK ${(lastAck - tw).toFixed(0)} ms`);
        }
        fleet.close();
        const pushMs = pushes.reduce((x, y) => x + y, 0) / pushes.length;
        const cpuUs = cpus.reduce((x, y) => x + y, 0) / cpus.length;
        rows.push({
          figure: `${n.toLocaleString('en-US')} streams: file change → last ACK`,
          unit: 'ms',
          value: pushMs,
          peer: 'target (issue)',
          peerValue: TARGET_PUSH_MS,
          ratio: TARGET_PUSH_MS / pushMs,
          target: 1,
          cpuUsPerOp: cpuUs / n,
        });
        rows.push({
          figure: `${n.toLocaleString('en-US')} streams: server RSS per stream`,
          unit: 'KiB',
          value: rssPerStream / 1024,
          peer: 'target (issue)',
          peerValue: TARGET_BYTES_PER_STREAM / 1024,
          ratio: TARGET_BYTES_PER_STREAM / rssPerStream,
          target: 1,
        });
        rows.push({ figure: `${n.toLocaleString('en-US')} streams: server JS heap per stream`, unit: 'KiB', value: heapPerStream / 1024 });
        rows.push({ figure: `${n.toLocaleString('en-US')} streams: initial fetch, all ACKed`, unit: 'ms', value: initialMs, cpuUsPerOp: (open.cpuUs - base.cpuUs) / n });
        (details.runs as unknown[]).push({ streams: n, pushMs: pushes, serverCpuUsPerPush: cpus, base, open, initialMs });
      } finally {
        proc.send({ cmd: 'stop' });
        await new Promise((r) => proc.once('exit', r));
      }
    }
    notes.push(
      'The push time includes noticing the change (fs.watch, 50 ms debounce), re-reading and re-checking the secret, and ' +
        'the clients\' ACKs; cpu µs/op is the server process\'s CPU time per stream for one push (for the initial fetch: ' +
        'per stream opened, connection setup included).',
      pin ? 'Server pinned to CPU 0, clients to CPU 1 (taskset).' : 'taskset not found: server and clients share the CPUs.',
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { rows, notes, details };
}

export const sdsBenchmark: Benchmark = {
  name: 'sds',
  description: 'Envoy SDS: 1,000 and 10,000 streams on one server; file change → last ACK, and memory per stream',
  run,
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2] === '--sds-child') {
  child(process.argv[3]!, process.argv[4]!).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
