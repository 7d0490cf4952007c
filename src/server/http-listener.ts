import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { describeError, type Logger } from '../core/index.js';

/** Probes, scrapers and admin calls send small requests: slow or idle clients must not hold sockets for long. */
export function applyHttpTimeouts(server: Server): void {
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
}

/** Binds, failing with the bind error (port in use…); later server errors are logged, never thrown. */
export function listenHttp(server: Server, host: string, port: number, logger: Logger, what: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      server.on('error', (err) => logger.error({ error: describeError(err) }, `${what} error`));
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Stops accepting, lets in-flight requests finish for up to `graceMs`, then drops what is left. */
export function closeHttp(server: Server, graceMs = 5_000): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
