/**
 * The benchmark harness: `npm run bench` runs every benchmark, `npm run bench -- NAME…` the named ones, `--long`
 * runs each measurement longer. Each benchmark measures meshcert beside a named peer in the same run (absolute
 * figures drift with the machine and its load; ratios measured together are what we compare), prints a table and
 * writes the figures as JSON under bench/results/ (git-ignored).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { issueBenchmark } from './issue.js';
import { caBenchmark } from './ca.js';
import { sdsBenchmark } from './sds.js';
import { ocspBenchmark } from './ocsp.js';
import { bumpBenchmark } from './bump.js';
import { gatewayBenchmark } from './gateway.js';
import { validationBenchmark } from './validation.js';
import { rotationBenchmark } from './rotation.js';
import { stapleBenchmark } from './staple.js';

export interface BenchRow {
  figure: string;
  unit: string;
  value: number | null;
  /** What the value is compared with, e.g. "openssl speed ecdsap256 sign". */
  peer?: string;
  peerValue?: number | null;
  /** value ÷ peerValue (or a target to meet, see `target`). */
  ratio?: number | null;
  /** The ratio the issue asks for, printed beside the measured one. */
  target?: number;
  /** CPU time of the whole process (all threads) per operation, µs. */
  cpuUsPerOp?: number | null;
}

export interface BenchReport {
  rows: BenchRow[];
  notes: string[];
  /** Anything else worth keeping in the JSON (versions, parameters, raw tool output). */
  details?: Record<string, unknown>;
}

export interface BenchOptions {
  /** Longer measurements (--long); the default keeps each benchmark under a minute. */
  long: boolean;
  /** --no-peers: measure meshcert only (quicker while working on it); ratios are then absent. */
  noPeers?: boolean;
  /** --cpu-prof=DIR: meshcert server processes the benchmark starts write V8 CPU profiles (.cpuprofile) there. */
  cpuProfDir?: string;
  log(message: string): void;
}

/** Node flags that make a meshcert child write a CPU profile when --cpu-prof=DIR was given. */
export function cpuProfArgs(options: Pick<BenchOptions, 'cpuProfDir'>): string[] {
  return options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] : [];
}

export interface Benchmark {
  name: string;
  description: string;
  run(options: BenchOptions): Promise<BenchReport>;
}

const BENCHMARKS: Benchmark[] = [issueBenchmark, caBenchmark, ocspBenchmark, sdsBenchmark, rotationBenchmark, gatewayBenchmark, validationBenchmark, bumpBenchmark, stapleBenchmark];

function usage(): string {
  return [
    'usage: npm run bench [-- [--long] [--no-peers] [--cpu-prof=DIR] [NAME…]]',
    '',
    'benchmarks:',
    ...BENCHMARKS.map((b) => `  ${b.name.padEnd(10)} ${b.description}`),
    '',
    '  --long          measure longer (minutes instead of under one)',
    '  --no-peers      measure meshcert only, where a benchmark supports it (bump)',
    '  --cpu-prof=DIR  meshcert server processes write V8 CPU profiles to DIR (bump, gateway)',
  ].join('\n');
}

function formatNumber(n: number | null | undefined, digits = 3): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  return Number(n.toPrecision(digits)).toString();
}

function formatRatio(row: BenchRow): string {
  if (row.ratio === null || row.ratio === undefined) return '';
  const r = row.ratio >= 10 ? `${formatNumber(row.ratio)}×` : `${(row.ratio * 100).toFixed(1)}%`;
  if (row.target === undefined) return r;
  return `${r} (target ≥ ${(row.target * 100).toFixed(0)}%${row.ratio >= row.target ? ', met' : ', NOT met'})`;
}

export function renderTable(rows: BenchRow[]): string {
  const header = ['figure', 'unit', 'value', 'peer', 'peer value', 'ratio', 'cpu µs/op'];
  const body = rows.map((r) => [
    r.figure,
    r.unit,
    formatNumber(r.value),
    r.peer ?? '',
    r.peer ? formatNumber(r.peerValue) : '',
    formatRatio(r),
    r.cpuUsPerOp === undefined ? '' : formatNumber(r.cpuUsPerOp),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((line) => line[i]!.length)));
  const numeric = new Set([2, 4, 6]);
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage());
    return 0;
  }
  const flags = argv.filter((a) => a.startsWith('-'));
  const unknownFlag = flags.find((f) => f !== '--long' && f !== '--no-peers' && !f.startsWith('--cpu-prof='));
  if (unknownFlag) {
    console.error(`bench: unknown option ${unknownFlag}\n\n${usage()}`);
    return 2;
  }
  const names = argv.filter((a) => !a.startsWith('-'));
  const unknown = names.filter((n) => !BENCHMARKS.some((b) => b.name === n));
  if (unknown.length) {
    console.error(`bench: no benchmark named ${unknown.join(', ')}\n\n${usage()}`);
    return 2;
  }
  const selected = names.length ? BENCHMARKS.filter((b) => names.includes(b.name)) : BENCHMARKS;
  const long = flags.includes('--long');
  const noPeers = flags.includes('--no-peers');
  const cpuProf = flags.find((f) => f.startsWith('--cpu-prof='))?.slice('--cpu-prof='.length);
  const cpuProfDir = cpuProf ? resolve(cpuProf) : undefined;
  const resultsDir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(resultsDir, { recursive: true });

  for (const bench of selected) {
    const startedAt = new Date();
    const log = (m: string): void => console.error(`[${bench.name} ${((Date.now() - startedAt.getTime()) / 1000).toFixed(1)}s] ${m}`);
    const environment = {
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      loadavgAtStart: loadavg(),
    };
    log(`${bench.description}${long ? ' (--long)' : ''}; load average ${environment.loadavgAtStart.map((l) => l.toFixed(2)).join(' ')}`);
    const report = await bench.run({ long, noPeers, ...(cpuProfDir ? { cpuProfDir } : {}), log });
    const durationMs = Date.now() - startedAt.getTime();
    console.log(`\n${bench.name}: ${bench.description}\n`);
    console.log(renderTable(report.rows));
    if (report.notes.length) console.log(`\n${report.notes.map((n) => `- ${n}`).join('\n')}`);
    const file = `${resultsDir}${bench.name}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(
      file,
      `${JSON.stringify(
        {
          benchmark: bench.name,
          description: bench.description,
          startedAt: startedAt.toISOString(),
          durationMs,
          long,
          environment: { ...environment, loadavgAtEnd: loadavg() },
          rows: report.rows,
          notes: report.notes,
          details: report.details ?? {},
        },
        null,
        2,
      )}\n`,
    );
    console.log(`\n(${(durationMs / 1000).toFixed(1)} s; written to ${file})\n`);
  }
  return 0;
}

// Run only as the entry point, so that a benchmark module may import the types above.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
