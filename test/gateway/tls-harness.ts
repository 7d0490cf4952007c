// Helpers for the gateway's TLS-side tests: a PortListener over a secrets folder, with a stand-in HTTP handler that
// answers every request with what the listener told it (the real proxy is gateway-HTTP's), and client helpers.
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { ManualClock, silentLogger, type Logger } from '../../src/core/index.js';
import { SecretSource } from '../../src/secrets/index.js';
import type { ConnectionContext, ConnectionHandler } from '../../src/gateway/connection-context.js';
import { SecretsCredentialStore } from '../../src/gateway/credential-store.js';
import { GatewayMetrics } from '../../src/gateway/gateway-metrics.js';
import { PortListener, type ServerPlan, type ListenerDeps } from '../../src/gateway/listener.js';
import { StaplingCache } from '../../src/gateway/stapling.js';
import { run, type ToolResult } from '../helpers/tools.js';

/** Answers each HTTP/1.1 request with `200 server=<first host> peer=<spiffe id> tls=<version>` and closes. */
export class EchoHandler implements ConnectionHandler {
  readonly contexts: ConnectionContext[] = [];
  handle(socket: TLSSocket | Socket, ctx: ConnectionContext): void {
    this.contexts.push(ctx);
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const body = `server=${ctx.serverHosts[0]} sni=${ctx.serverName ?? '-'} tls=${ctx.tlsVersion ?? '-'} peer=${ctx.peer?.spiffeId ?? ctx.peer?.chain[0]?.subject ?? '-'}\n`;
      socket.end(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
    socket.on('error', () => undefined);
  }
}

export function serverPlan(p: Partial<ServerPlan> & Pick<ServerPlan, 'id' | 'hosts' | 'mode'>): ServerPlan {
  return {
    gateway: 'edge',
    port: 8443,
    protocol: 'HTTPS',
    tls: {},
    onlyVerifyLeafCertCrl: false,
    alpn: ['http/1.1'],
    ...p,
  };
}

export interface ListenerHarness {
  listener: PortListener;
  port: number;
  source: SecretSource;
  store: SecretsCredentialStore;
  metrics: GatewayMetrics;
  clock: ManualClock;
  handler: EchoHandler;
  metricsText(): Promise<string>;
  close(): Promise<void>;
}

export async function startListener(
  secretsDir: string,
  servers: ServerPlan[],
  options: { clock?: ManualClock; routeTcp?: ListenerDeps['routeTcp']; handshakeTimeoutMs?: number; logger?: Logger; accessLog?: Logger } = {},
): Promise<ListenerHarness> {
  const clock = options.clock ?? new ManualClock(Date.now());
  const source = SecretSource.open({ paths: [secretsDir], clock, watch: false });
  const store = new SecretsCredentialStore(source);
  const metrics = new GatewayMetrics();
  const handler = new EchoHandler();
  const listener = new PortListener(
    { port: 8443, bind: '127.0.0.1', servers },
    {
      store,
      stapling: new StaplingCache(clock),
      metrics,
      logger: options.logger ?? silentLogger,
      accessLog: () => options.accessLog,
      handler,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5000,
      connectTimeoutMs: 2000,
      idleTimeoutMs: 0,
      routeTcp: options.routeTcp ?? (() => ({ error: 'no tcp routes in this test' })),
    },
  );
  store.onChange(() => listener.rebuild());
  const addr = await listener.listen(0);
  return {
    listener,
    port: addr.port,
    source,
    store,
    metrics,
    clock,
    handler,
    metricsText: () => metrics.registry.metrics(),
    async close() {
      await listener.close(true);
      store.close();
      source.close();
    },
  };
}

/** A Node TLS client that sends one GET and resolves with the body, or rejects with the TLS/socket error. */
export function httpsGet(port: number, options: ConnectionOptions & { requestOCSP?: boolean } = {}): Promise<{ body: string; socket: TLSSocket; staple: Buffer | null }> {
  return new Promise((resolve, reject) => {
    let staple: Buffer | null = null;
    const sock = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    sock.on('OCSPResponse', (r: Buffer) => (staple = r));
    let body = '';
    sock.once('secureConnect', () => sock.write(`GET / HTTP/1.1\r\nhost: ${options.servername ?? 'x'}\r\nconnection: close\r\n\r\n`));
    sock.on('data', (d: Buffer) => (body += d.toString('utf8')));
    sock.on('end', () => {
      if (!body) reject(new Error('connection closed without a response'));
      else resolve({ body: body.slice(body.indexOf('\r\n\r\n') + 4), socket: sock, staple });
    });
    sock.on('error', reject);
  });
}

/** Raw bytes to the port; resolves with what came back before the server closed (or after `ms`). */
export function rawExchange(port: number, bytes: Buffer | null, ms = 3000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = netConnect({ host: '127.0.0.1', port }, () => {
      if (bytes) s.write(bytes);
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, ms);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
  });
}

/** `openssl s_client` against 127.0.0.1:port with extra args; sends a GET and returns its output. */
export function sClient(port: number, args: string[]): Promise<ToolResult> {
  // Synchronous spawn would block the event loop the listener runs on: run it async.
  return new Promise((resolve, reject) => {
    import('node:child_process').then(({ spawn }) => {
      const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-ign_eof', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.stdin.end('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      const timer = setTimeout(() => p.kill(), 15_000);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(timer);
        resolve({ status: code ?? -1, stdout, stderr });
      });
    }, reject);
  });
}

/** Any program, async (the server under test lives in this process). */
export function runAsync(cmd: string, args: string[], input?: string): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    import('node:child_process').then(({ spawn }) => {
      const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.stdin.end(input ?? '');
      const timer = setTimeout(() => p.kill(), 20_000);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(timer);
        resolve({ status: code ?? -1, stdout, stderr });
      });
    }, reject);
  });
}

export { run };
