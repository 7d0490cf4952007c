// Runs a peer program (openssl speed, nginx -t, …) to completion and collects its output; never rejects.
import { spawn } from 'node:child_process';

export interface ToolRun {
  /** null when the program could not be started (then stderr says why). */
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runTool(cmd: string, args: string[]): Promise<ToolRun> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolve({ code: null, stdout, stderr: `${stderr}${err.message}` }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
