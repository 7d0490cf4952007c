/**
 * The client side of `npm run bench -- staple`, run inside the responder's network namespace (see staple.ts):
 * fetches the staple of DIR/leaf.pem from the responder at URL with meshcert's fetchStaple (POST, parse, verify),
 * then the same request as a bare HTTP exchange (the transport floor), then with `openssl ocsp` as a client
 * (a process per request, as a cron job does). Prints one JSON object on stdout.
 */
import 'reflect-metadata';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Certificate, buildOcspRequest, certIdFor } from '../src/pki/index.js';
import { fetchStaple } from '../src/secrets/index.js';

const [dir, url, nText, cliText] = process.argv.slice(2);
const n = Number(nText);
const cliN = Number(cliText);
const leaf = Certificate.parse(readFileSync(join(dir!, 'leaf.pem'), 'utf8'));
const issuer = Certificate.parse(readFileSync(join(dir!, 'ca.pem'), 'utf8'));

function summary(samples: number[], cpuUs: number) {
  const s = samples.slice().sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { n: s.length, p50Ms: q(0.5), p90Ms: q(0.9), p99Ms: q(0.99), meanMs: s.reduce((a, b) => a + b, 0) / s.length, cpuUsPerOp: cpuUs / s.length };
}

async function timed(count: number, warmup: number, fn: () => Promise<void>) {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  const cpu = process.cpuUsage(cpu0);
  return summary(samples, cpu.user + cpu.system);
}

const fetch = await timed(n, 20, async () => {
  const r = await fetchStaple({ cert: leaf, issuer, url: url! });
  if (!r.ok) throw new Error(`fetchStaple: ${r.reason}: ${r.message}`);
});

const body = buildOcspRequest({ certIds: [certIdFor(leaf, issuer)] });
const raw = await timed(n, 20, () =>
  new Promise<void>((resolve, reject) => {
    const req = request(url!, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/ocsp-request', Accept: 'application/ocsp-response', 'Content-Length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', reject);
    req.end(body);
  }),
);

const cliSamples: number[] = [];
for (let i = 0; i < cliN; i++) {
  const t = performance.now();
  const r = spawnSync('openssl', ['ocsp', '-issuer', join(dir!, 'ca.pem'), '-cert', join(dir!, 'leaf.pem'), '-url', url!, '-CAfile', join(dir!, 'ca.pem'), '-no_nonce'], { encoding: 'utf8' });
  if (!/: good/.test(r.stdout)) throw new Error(`openssl ocsp client: ${r.stderr}`);
  cliSamples.push(performance.now() - t);
}
const cli = summary(cliSamples, NaN);
process.stdout.write(`${JSON.stringify({ fetch, raw, cli })}\n`);
