// PASSTHROUGH: the ClientHello was read (and pushed back) only to choose the upstream by SNI; the bytes, hello
// included, are spliced to it unchanged, so the client's TLS session is with the upstream.
import { connect, type Socket } from 'node:net';

export interface SpliceTarget {
  host: string;
  port: number;
}

export interface SpliceOptions {
  connectTimeoutMs: number;
  /** Close both sides after this long without bytes either way; 0 = never. */
  idleTimeoutMs?: number;
}

/**
 * Connects to `target` and pipes bytes both ways. Resolves 'connected' once the upstream accepted (the splice then
 * runs until either side closes) or rejects when it could not connect in time; either way the downstream socket is
 * owned by the splice (destroyed on failure).
 */
export function splice(downstream: Socket, target: SpliceTarget, options: SpliceOptions): Promise<'connected'> {
  return new Promise((resolve, reject) => {
    const up = connect({ host: target.host, port: target.port });
    let connected = false;
    const timer = setTimeout(() => up.destroy(new Error(`connect to ${target.host}:${target.port} timed out after ${options.connectTimeoutMs} ms`)), options.connectTimeoutMs);
    timer.unref();
    const closeBoth = (): void => {
      downstream.destroy();
      up.destroy();
    };
    up.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      up.setNoDelay(true);
      downstream.setNoDelay(true);
      if (options.idleTimeoutMs) {
        downstream.setTimeout(options.idleTimeoutMs, closeBoth);
      }
      downstream.pipe(up);
      up.pipe(downstream);
      resolve('connected');
    });
    up.on('error', (err) => {
      clearTimeout(timer);
      if (!connected) reject(err);
      closeBoth();
    });
    downstream.on('error', closeBoth);
    downstream.on('close', () => up.destroy());
    up.on('close', () => downstream.destroy());
  });
}
