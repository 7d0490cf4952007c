// The gateway's admin listener (keep it on loopback): /metrics (Prometheus), /healthz, /config_dump (active servers,
// certificates with serials, expiry and staple state, like `istioctl proxy-config secret`). Read-only.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { describeError, silentLogger, type Logger } from '../core/index.js';

export interface AdminSources {
  registry: Registry;
  /** Problems that make the gateway unhealthy (a TLS server without a usable certificate…); empty = healthy. */
  health(): { healthy: boolean; problems: string[] };
  configDump(): unknown;
}

export class AdminServer {
  readonly #server: Server;
  readonly #logger: Logger;

  private constructor(server: Server, logger: Logger) {
    this.#server = server;
    this.#logger = logger;
  }

  static async start(listen: { host: string; port: number }, sources: AdminSources, logger: Logger = silentLogger): Promise<AdminServer> {
    const server = createServer((req, res) => {
      handle(req, res, sources).catch((err: unknown) => {
        logger.error({ err: describeError(err), path: req.url }, 'admin request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new AdminServer(server, logger);
  }

  get address(): AddressInfo {
    return this.#server.address() as AddressInfo;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
      this.#logger.debug('admin listener closed');
    });
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, sources: AdminSources): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
    res.end('method not allowed\n');
    return;
  }
  switch (path) {
    case '/metrics': {
      const text = await sources.registry.metrics();
      res.writeHead(200, { 'content-type': sources.registry.contentType });
      res.end(text);
      return;
    }
    case '/healthz': {
      const h = sources.health();
      res.writeHead(h.healthy ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(h.healthy ? 'ok\n' : `unhealthy:\n${h.problems.map((p) => `- ${p}`).join('\n')}\n`);
      return;
    }
    case '/config_dump': {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(sources.configDump(), null, 2)}\n`);
      return;
    }
    default:
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /metrics, /healthz, /config_dump\n');
  }
}
