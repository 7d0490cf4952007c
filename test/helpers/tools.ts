import { spawnSync } from 'node:child_process';

export interface ToolResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs an independent tool (openssl, certtool, curl) and returns what it printed; never throws on a non-zero exit. */
export function run(cmd: string, args: string[], input?: string | Uint8Array): ToolResult {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function openssl(args: string[], input?: string | Uint8Array): ToolResult {
  return run('openssl', args, input);
}

export function certtool(args: string[], input?: string | Uint8Array): ToolResult {
  return run('certtool', args, input);
}
