import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeError, silentLogger, type Logger } from '../core/index.js';
import type { ServerMetrics } from './metrics.js';
import { applyHttpTimeouts, closeHttp, listenHttp } from './http-listener.js';

/** One readiness check: ok, or a reason a person can act on. */
export type HealthCheck = () => Promise<{ ok: true } | { ok: false; reason: string }>;

export interface HttpEndpointOptions {
  metrics: ServerMetrics;
  /** Named checks; /healthz is 200 only when all pass. */
  checks: Record<string, HealthCheck>;
  logger?: Logger;
  /** A check that takes longer than this fails (a hung ledger must not hang the probe). */
  checkTimeoutMs?: number;
  /** More endpoints (OCSP, CRL, roots), tried first: `handle` returns false for paths that are not theirs. */
  routes?: { handle(req: IncomingMessage, res: ServerResponse): boolean };
}

/**
 * The control plane's plain-HTTP listener: GET /healthz and GET /metrics, and the routes it is given (OCSP, CRL,
 * roots). Everything else is 404; a failing handler is a 500, never a crashed process.
 */
export class HttpEndpoint {
  readonly server: Server;
  readonly #opts: HttpEndpointOptions;
  readonly #logger: Logger;

  constructor(options: HttpEndpointOptions) {
    this.#opts = options;
    this.#logger = options.logger ?? silentLogger;
    const fail = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
      this.#logger.error({ error: describeError(err), url: req.url }, 'HTTP handler failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    };
    const routes = options.routes;
    this.server = createServer((req, res) => {
      // The routes first and synchronously: a cached OCSP answer is written in this same tick.
      try {
        if (routes?.handle(req, res)) return;
      } catch (err) {
        return fail(req, res, err);
      }
      this.#handle(req, res).catch((err: unknown) => fail(req, res, err));
    });
    applyHttpTimeouts(this.server);
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listenHttp(this.server, host, port, this.#logger, 'HTTP server');
  }

  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then drops what is left. */
  close(graceMs = 5_000): Promise<void> {
    return closeHttp(this.server, graceMs);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/healthz' && path !== '/metrics') return send(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'method not allowed\n');
    }
    if (path === '/healthz') {
      const failures = await this.#runChecks();
      if (failures.length === 0) return send(res, 200, 'ok\n', req.method === 'HEAD');
      return send(res, 503, `unhealthy\n${failures.map((f) => `${f}\n`).join('')}`, req.method === 'HEAD');
    }
    const text = await this.#opts.metrics.text();
    send(res, 200, text, req.method === 'HEAD', this.#opts.metrics.contentType);
  }

  async #runChecks(): Promise<string[]> {
    const timeout = this.#opts.checkTimeoutMs ?? 2_000;
    const results = await Promise.all(
      Object.entries(this.#opts.checks).map(async ([name, check]) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          const res = await Promise.race([
            check(),
            new Promise<{ ok: false; reason: string }>((resolve) => {
              timer = setTimeout(() => resolve({ ok: false, reason: `no answer within ${timeout} ms` }), timeout);
            }),
          ]);
          return res.ok ? null : `${name}: ${res.reason}`;
        } catch (err) {
          return `${name}: ${describeError(err)}`;
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    return results.filter((r): r is string => r !== null);
  }
}

function send(res: ServerResponse, status: number, body: string, headOnly = false, contentType = 'text/plain; charset=utf-8'): void {
  res.statusCode = status;
  res.setHeader('content-type', contentType);
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('cache-control', 'no-store');
  res.end(headOnly ? undefined : body);
}
