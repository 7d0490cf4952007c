// Runs the compiled `bin/meshcert` as a user would: a child process with its own args, env and cwd. Tests that
// use it need `npm run build` first (npm test does it); a missing build is reported once, clearly.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MESHCERT_BIN = join(REPO_ROOT, 'bin', 'meshcert');

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  /** The command line, for assertion messages. */
  cmd: string;
}

export interface CliOptions {
  /** Added to (or, with value undefined, removed from) the environment. MESHCERT_DATA_DIR is unset unless given. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string | Uint8Array;
  timeoutMs?: number;
}

function assertBuilt(): void {
  if (!existsSync(join(REPO_ROOT, 'dist', 'cli', 'main.js'))) {
    throw new Error(`meshcert is not built: run \`npm run build\` in ${REPO_ROOT} before the CLI tests`);
  }
}

/** Spawns `bin/meshcert ARGS…` and collects its exit status and output; never rejects on a non-zero exit. */
export function meshcert(args: string[], options: CliOptions = {}): Promise<CliResult> {
  assertBuilt();
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Keep the child independent of the test runner and of the developer's shell.
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  delete env.MESHCERT_DATA_DIR;
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const cmd = `meshcert ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MESHCERT_BIN, ...args], {
      cwd: options.cwd ?? REPO_ROOT,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        status: code ?? (signal ? 128 : -1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        cmd,
      });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** A readable summary of a run, for assertion messages. */
export function show(r: CliResult): string {
  return `${r.cmd}\nexit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

/** Runs and insists on exit 0. */
export async function meshcertOk(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const r = await meshcert(args, options);
  if (r.status !== 0) throw new Error(`expected exit 0:\n${show(r)}`);
  return r;
}

/** Runs a command with --json and exit 0, and parses what it printed. */
export async function meshcertJson<T = any>(args: string[], options: CliOptions = {}): Promise<T> {
  const r = await meshcertOk([...args, '--json'], options);
  return parseJson<T>(r.stdout, r);
}

export function parseJson<T = any>(text: string, r?: CliResult): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`not JSON: ${r ? show(r) : text}`);
  }
}

export interface CliError {
  code: string;
  message: string;
  subject?: string;
}

/**
 * The MeshError a failed run reported: parsed from `{"error": …}` on stderr (with --json), or from the text form
 * `meshcert: error: MESSAGE [MESH_ERR_…]`. Null when stderr holds neither.
 */
export function cliError(r: CliResult): CliError | null {
  const line = r.stderr.trim();
  if (line.startsWith('{')) {
    try {
      const e = (JSON.parse(line) as { error?: CliError }).error;
      if (e && typeof e.code === 'string') return e;
    } catch {
      /* fall through to the text form */
    }
  }
  const m = /^meshcert: error: ([\s\S]*) \[(MESH_ERR_[A-Z0-9_]+)\]\s*$/.exec(line);
  return m ? { code: m[2]!, message: m[1]! } : null;
}

/** Runs a runner over items with at most `limit` at a time (meshcert processes cost CPU; the test machine has 2 cores). */
export async function inParallel<T, R>(items: readonly T[], fn: (item: T, index: number) => Promise<R>, limit = 3): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Relative path → SHA-256 of every file under `dir` (recursively), to show that a failed command changed nothing. */
export function snapshotDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  const walk = (d: string, rel: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(p).isDirectory()) walk(p, r);
      else out[r] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir, '');
  return out;
}

/** Permission bits of a file (e.g. 0o600). */
export function fileMode(path: string): number {
  return statSync(path).mode & 0o777;
}
