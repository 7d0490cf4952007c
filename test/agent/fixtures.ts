// Shared by the test/agent suites: a real `meshcert serve` process (from the sources, through tsx) on loopback, with
// bootstrap tokens and service-account JWTs, and what an agent test needs around it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Agent, type AgentOptions, type CertificateEvent, type FailureEvent } from '../../src/agent/index.js';
import { MESHCERT_BIN, REPO_ROOT } from '../helpers/cli.js';
import { childEnv, spawnMeshcert, waitForOutput, type RunningMeshcert } from '../helpers/meshcert-process.js';
import { TestJwtIssuer } from '../server/fixtures.js';

export const SERVER_NAME = 'istiod.istio-system.svc';
export const TD = 'spiffe://cluster.local';

export function tempDir(prefix = 'meshcert-agent-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A port on 127.0.0.1 that was free a moment ago: for a CA that must come back on the same address. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface BootstrapToken {
  name: string;
  token: string;
  identity: string;
  oneTime?: boolean;
}

/** `meshcert serve` as a process: start, stop (SIGTERM) and start again on the same port and data dir. */
export class CaProcess {
  readonly dir: string;
  readonly dataDir: string;
  readonly rootFile: string;
  readonly jwt: TestJwtIssuer;
  #proc: RunningMeshcert | null = null;
  address = '';

  constructor(
    private readonly tokens: BootstrapToken[],
    private readonly port = 0,
    private readonly issuance: Record<string, unknown> = { defaultTtl: '1h', maxTtl: '2h' },
  ) {
    this.dir = tempDir('meshcert-agent-ca-');
    this.dataDir = join(this.dir, 'data');
    this.rootFile = join(this.dataDir, 'root-cert.pem');
    this.jwt = new TestJwtIssuer(this.dir);
  }

  async start(): Promise<this> {
    const tokenFile = join(this.dir, 'tokens.yaml');
    writeFileSync(tokenFile, stringify({ tokens: this.tokens }));
    const cfg = join(this.dir, 'serve.yaml');
    writeFileSync(
      cfg,
      stringify({
        trustDomain: 'cluster.local',
        grpc: { listen: `127.0.0.1:${this.port}`, dnsNames: [SERVER_NAME] },
        issuance: this.issuance,
        auth: { jwt: [this.jwt.config], bootstrapTokens: tokenFile, clientCertificates: true },
      }),
    );
    const r = spawnMeshcert(['serve', '--data-dir', this.dataDir, '--config', cfg, '--log-level', 'warn']);
    this.#proc = r;
    const m = await waitForOutput(r, /IstioCertificateService\): (127\.0\.0\.1:\d+)/);
    this.address = m[1]!;
    return this;
  }

  async stop(): Promise<void> {
    const r = this.#proc;
    this.#proc = null;
    if (!r || r.child.exitCode !== null || r.child.signalCode !== null) return;
    r.child.kill('SIGTERM');
    await r.exited;
  }
}

/** An in-process agent with test-friendly defaults: short retries, --ca-root polled fast, silent. */
export async function startAgent(ca: CaProcess, options: Partial<AgentOptions>): Promise<Agent> {
  const agent = new Agent({
    caAddress: ca.address,
    caRootFile: ca.rootFile,
    caServerName: SERVER_NAME,
    rotation: { backoffInitialMs: 100, backoffMaxMs: 500, ...(options.rotation ?? {}) },
    caRootPollMs: 100,
    defaultMetrics: false,
    ...options,
  });
  await agent.start();
  return agent;
}

/** The next event of that name (rejects after timeoutMs with what the agent last said). */
export function nextEvent<T extends CertificateEvent | FailureEvent | { notAfter: Date }>(
  agent: Agent,
  name: 'certificate' | 'failure' | 'expired' | 'trust-bundle',
  accept: (e: T) => boolean = () => true,
  timeoutMs = 20_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const on = (e: T) => {
      if (!accept(e)) return;
      clearTimeout(timer);
      agent.off(name, on);
      resolve(e);
    };
    const timer = setTimeout(() => {
      agent.off(name, on);
      reject(new Error(`no '${name}' event within ${timeoutMs} ms; last error: ${agent.lastError?.message ?? 'none'}`));
    }, timeoutMs);
    agent.on(name, on);
  });
}

export function httpGet(address: string, path: string): Promise<{ status: number; body: string }> {
  const [host, port] = address.split(/:(?=\d+$)/);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port: Number(port), path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** `bin/meshcert ARGS` (the build, as a user runs it) as a long-running process; see waitForOutput. */
export function spawnBin(args: string[]): RunningMeshcert {
  if (!existsSync(join(REPO_ROOT, 'dist', 'cli', 'main.js'))) {
    throw new Error(`meshcert is not built: run \`npx tsc -p tsconfig.build.json\` in ${REPO_ROOT} before the agent CLI tests`);
  }
  const child = spawn(process.execPath, [MESHCERT_BIN, ...args], { cwd: REPO_ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exited };
}
