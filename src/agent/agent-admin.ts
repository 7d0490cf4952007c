import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import { ErrorCodes, MeshError, describeError, silentLogger, type Logger } from '../core/index.js';
import type { AgentMetrics } from './agent-metrics.js';

/** `HOST:PORT` (IPv6 in brackets; port 0 = any free port). */
export function parseListenAddress(text: string, field = '--admin-listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? m[2])! : '';
  if (!m || port > 65535 || (m[1] !== undefined && isIP(host) !== 6)) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${field}: "${text}" is not HOST:PORT (e.g. 127.0.0.1:15020, [::1]:15020)`, { subject: field });
  }
  return { host, port };
}

/** What /healthz reports: ready only while a valid certificate is held. */
export interface AgentHealth {
  ready: boolean;
  /** One line in words: what the agent holds, or why it holds nothing usable. */
  message: string;
}

/**
 * The agent's HTTP endpoint: GET /healthz (200 while it holds a valid certificate, else 503, with a line saying why)
 * and GET /metrics (Prometheus). Nothing else; never a key or a token.
 */
export class AgentAdminServer {
  readonly #server: Server;
  #address: string | null = null;

  constructor(
    private readonly health: () => AgentHealth,
    private readonly metrics: AgentMetrics,
    private readonly logger: Logger = silentLogger,
  ) {
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
        return;
      }
      if (path === '/healthz' || path === '/readyz') {
        const h = this.health();
        res.writeHead(h.ready ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end(`${h.message}\n`);
        return;
      }
      if (path === '/metrics') {
        this.metrics.registry
          .metrics()
          .then((text) => res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text))
          .catch((err) => {
            this.logger.error({ err: describeError(err) }, 'metrics could not be rendered');
            res.writeHead(500).end();
          });
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: try /healthz or /metrics\n');
    });
    this.#server.requestTimeout = 10_000;
    this.#server.headersTimeout = 5_000;
    this.#server.keepAliveTimeout = 5_000;
  }

  /** `HOST:PORT` once listening. */
  get address(): string | null {
    return this.#address;
  }

  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new MeshError(ErrorCodes.UNAVAILABLE, `--admin-listen ${host}:${port}: cannot listen: ${describeError(err)}`, { subject: '--admin-listen', cause: err }));
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        const a = this.#server.address() as AddressInfo;
        this.#address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
        resolve(this.#address);
      });
    });
  }

  close(): Promise<void> {
    if (!this.#server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
