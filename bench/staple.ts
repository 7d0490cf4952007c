/**
 * `npm run bench -- staple`: how long meshcert takes to fetch and verify an OCSP staple from a real responder,
 * `openssl ocsp -index` (Debian's openssl, signing each answer live), beside two references measured in the same
 * run against the same responder: the bare HTTP exchange of the same request (the floor: the responder's own time
 * plus loopback), and `openssl ocsp` as a client, a process per fetch, as a cron job keeping `tls.ocsp` fresh does.
 * `openssl ocsp -port` binds every interface, so the responder and the client run in a private network namespace
 * (`unshare -n`, root), pinned to CPU 0 (responder) and CPU 1 (client).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestCA } from '../test/helpers/test-ca.js';
import { indexLine } from '../test/secrets/openssl-responder.js';
import type { BenchOptions, BenchReport, Benchmark } from './run.js';

interface Summary {
  n: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  meanMs: number;
  cpuUsPerOp: number;
}

const PORT = 8889; // inside the private namespace only

export const stapleBenchmark: Benchmark = {
  name: 'staple',
  description: 'OCSP staple fetch (POST, parse, verify) from `openssl ocsp` vs the bare HTTP exchange and the openssl ocsp client',
  async run(options: BenchOptions): Promise<BenchReport> {
    const { log } = options;
    if (process.getuid?.() !== 0) {
      return { rows: [], notes: ['not measured: `openssl ocsp -port` binds every interface, so it runs in `unshare -n`, which needs root'] };
    }
    const n = options.long ? 2_000 : 300;
    const cliN = options.long ? 100 : 30;
    const dir = mkdtempSync(join(tmpdir(), 'meshcert-bench-staple-'));
    try {
      const ca = await (await TestCA.root({ name: 'bench staple root' })).child({ name: 'bench staple CA' });
      const url = `http://127.0.0.1:${PORT}/`;
      const leaf = await ca.issueServer(['gw.example.com'], { ocspUrls: [url] });
      writeFileSync(join(dir, 'ca.pem'), ca.cert.pem);
      writeFileSync(join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
      writeFileSync(join(dir, 'leaf.pem'), leaf.cert.pem);
      writeFileSync(join(dir, 'index.txt'), indexLine(leaf.cert));
      const client = fileURLToPath(new URL('./staple-client.ts', import.meta.url));
      const script = [
        'set -e',
        'ip link set lo up',
        `(taskset -c 0 openssl ocsp -index ${dir}/index.txt -port ${PORT} -rsigner ${dir}/ca.pem -rkey ${dir}/ca.key -CA ${dir}/ca.pem -nmin 60 -ignore_err 2>${dir}/responder.log &)`,
        'sleep 0.5',
        `exec taskset -c 1 "${process.execPath}" --import tsx ${client} ${dir} ${url} ${n} ${cliN}`,
      ].join('\n');
      log(`openssl ocsp responder and client in a private network namespace; ${n} fetches each, ${cliN} openssl client runs`);
      const out = await new Promise<string>((resolve, reject) => {
        const child = spawn('unshare', ['-n', 'bash', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.on('exit', (code) => {
          try {
            process.kill(-child.pid!, 'SIGTERM'); // the responder, still running in the group
          } catch {
            /* gone */
          }
          if (code === 0) resolve(stdout);
          else reject(new Error(`staple bench client exited ${code}: ${stderr.slice(-2000)}`));
        });
      });
      const { fetch, raw, cli } = JSON.parse(out.trim().split('\n').at(-1)!) as { fetch: Summary; raw: Summary; cli: Summary };
      return {
        rows: [
          { figure: 'staple fetch p50 (POST + parse + verify)', unit: 'ms', value: fetch.p50Ms, peer: 'openssl ocsp client (a process per fetch)', peerValue: cli.p50Ms, ratio: fetch.p50Ms / cli.p50Ms },
          { figure: 'staple fetch p99', unit: 'ms', value: fetch.p99Ms, peer: 'openssl ocsp client p99', peerValue: cli.p99Ms, ratio: fetch.p99Ms / cli.p99Ms },
          { figure: 'staple fetch p50 vs bare HTTP exchange', unit: 'ms', value: fetch.p50Ms, peer: 'same POST, no parse/verify', peerValue: raw.p50Ms, ratio: fetch.p50Ms / raw.p50Ms },
          { figure: 'client CPU per staple fetch', unit: 'µs', value: fetch.cpuUsPerOp, peer: 'bare HTTP exchange', peerValue: raw.cpuUsPerOp, ratio: fetch.cpuUsPerOp / raw.cpuUsPerOp },
        ],
        notes: [
          'a fetch happens once per certificate per half-validity (or on a retry), so its latency and CPU matter for startup with many secrets, not per handshake',
          `load average at end: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
        ],
        details: { fetch, raw, cli, n, cliN },
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
