import { spawn } from 'node:child_process';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';

const DAY = 86_400_000;

/** What the upstream saw of one request, echoed back as JSON. */
export interface Echo {
  method: string;
  path: string;
  httpVersion: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface Upstream {
  port: number;
  leaf: IssuedLeaf;
  /** Requests seen, in order. */
  seen: Echo[];
  close(): Promise<void>;
}

/**
 * An HTTPS upstream (HTTP/2 and HTTP/1.1 by ALPN, as most public servers) whose certificate comes from `ca`, the
 * "public" CA that the proxy trusts and the client does not need to. Answers every request with a JSON echo.
 */
export async function startUpstream(leaf: IssuedLeaf): Promise<Upstream> {
  const seen: Echo[] = [];
  const server = createSecureServer({ key: leaf.keyPem, cert: leaf.chainPem, allowHTTP1: true }, (req: Http2ServerRequest, res: Http2ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const echo: Echo = { method: req.method, path: req.url, httpVersion: req.httpVersion, headers: { ...req.headers } };
      seen.push(echo);
      const body = JSON.stringify({ ...echo, body: Buffer.concat(chunks).toString('utf8') });
      // HTTP/1.1 only: close the connection after this response (the proxy must reconnect for the next request).
      if (req.httpVersion === '1.1' && req.url.startsWith('/close')) res.setHeader('connection', 'close');
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes', 'x-secret': 'drop-me' });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    leaf,
    seen,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        // http2 sessions keep the server open: close them.
        setTimeout(() => r(), 500).unref();
      }),
  };
}

export interface Pki {
  publicCa: TestCA;
  /** upstream.test, www.upstream.test; subject with O and C so that the copy is visible. */
  good: IssuedLeaf;
  expired: IssuedLeaf;
  noSan: IssuedLeaf;
}

export async function makePki(): Promise<Pki> {
  const publicCa = await TestCA.root({ name: 'public root' });
  const now = Date.now();
  const good = await publicCa.issueServer(['upstream.test', 'www.upstream.test'], { subject: 'C=DE, O=Upstream Example GmbH, CN=upstream.test' });
  const expired = await publicCa.issueServer(['expired.test'], {
    subject: 'O=Expired Example, CN=expired.test',
    notBefore: new Date(now - 30 * DAY),
    notAfter: new Date(now - DAY),
  });
  const noSan = await publicCa.issue({ subject: 'CN=nosan.test', extKeyUsage: ['serverAuth'], keyUsage: ['digitalSignature'] });
  return { publicCa, good, expired, noSan };
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a peer program without blocking the event loop (the proxy under test runs in this process). */
export function exec(cmd: string, args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: `${stderr}${err.message}` });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

export { tempDir };
