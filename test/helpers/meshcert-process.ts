import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(REPO, 'src', 'cli', 'main.ts');

/** The child's environment without the test runner's and the user's meshcert settings. */
export function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  delete env.MESHCERT_DATA_DIR;
  return env;
}

export interface RunningMeshcert {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `meshcert ARGS` as a real process, from the sources through tsx, never blocking the test process (a server
 * running inside the test process must keep answering while the child talks to it).
 */
export function spawnMeshcert(args: string[]): RunningMeshcert {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: REPO, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Waits until stdout matches `re`; fails with both outputs when the process exits or the time runs out. */
export async function waitForOutput(r: RunningMeshcert, re: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(r.stdout());
    if (m) return m;
    if (r.child.exitCode !== null || r.child.signalCode !== null || Date.now() > deadline) {
      throw new Error(`no ${re} in the output of meshcert (exit ${r.child.exitCode})\n--- stdout\n${r.stdout()}--- stderr\n${r.stderr()}`);
    }
    await new Promise((res) => setTimeout(res, 50));
  }
}
