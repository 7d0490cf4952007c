/**
 * The load client of `npm run bench -- gateway`, its own process pinned to another CPU than the server:
 * - `handshake`: each of `connections` loops opens a TCP connection, does a full TLS 1.3 handshake (no session
 *   resumption: no session is ever offered), optionally asking for an OCSP staple, and closes; one op = one handshake.
 * - `keepalive`: `connections` TLS connections, each sending GET requests one after another (HTTP/1.1 keep-alive,
 *   Content-Length responses); one op = one request.
 *
 *   node --import tsx bench/gateway-load-client.ts SPEC.json   → one JSON line of results on stdout
 */
import { readFileSync } from 'node:fs';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';

export interface TlsLoadSpec {
  mode: 'handshake' | 'keepalive';
  host: string;
  port: number;
  servername: string;
  /** PEM of the CA to verify the server with. */
  ca: string;
  requestOCSP: boolean;
  connections: number;
  durationMs: number;
  /** keepalive: the request's Host and path. */
  path?: string;
}

export interface TlsLoadResult {
  ops: number;
  errors: number;
  firstError?: string;
  wallMs: number;
  perSecond: number;
  p50Us: number;
  p99Us: number;
  /** Handshakes that came with a staple (handshake mode). */
  stapled: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as TlsLoadSpec;
  const lat: number[] = [];
  let ops = 0;
  let errors = 0;
  let stapled = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const end = start + spec.durationMs;
  const onError = (e: unknown) => {
    errors++;
    firstError ??= String((e as Error)?.message ?? e);
  };
  const opts = { host: spec.host, port: spec.port, servername: spec.servername, ca: spec.ca, minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'], requestOCSP: spec.requestOCSP } as ConnectionOptions;

  const handshakeLoop = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        let got = false;
        const s = connect(opts);
        s.on('OCSPResponse', (r: Buffer) => {
          if (r && r.length) got = true;
        });
        s.once('secureConnect', () => {
          lat.push((performance.now() - t0) * 1000);
          ops++;
          if (got) stapled++;
          // A polite close (close_notify + FIN), reading what the server still sends (TLS 1.3 session tickets),
          // so that no server pays for a reset it did not cause.
          s.end();
        });
        s.resume();
        s.once('close', () => resolve());
        s.once('error', (e) => {
          if (ops === 0 || !s.writableEnded) onError(e);
          s.destroy();
          resolve();
        });
      });
    }
  };

  const keepAliveLoop = async (): Promise<void> => {
    const req = Buffer.from(`GET ${spec.path ?? '/'} HTTP/1.1\r\nhost: ${spec.servername}\r\n\r\n`);
    while (performance.now() < end) {
      const s: TLSSocket | null = await new Promise<TLSSocket>((resolve, reject) => {
        const c = connect(opts, () => resolve(c));
        c.once('error', reject);
      }).catch((e: unknown) => {
        onError(e);
        return null;
      });
      if (!s) continue;
      await new Promise<void>((resolve) => {
        let buf: Buffer = Buffer.alloc(0);
        let t0 = 0;
        const send = () => {
          if (performance.now() >= end) {
            s.destroy();
            resolve();
            return;
          }
          t0 = performance.now();
          s.write(req);
        };
        s.on('data', (d: Buffer) => {
          buf = buf.length ? Buffer.concat([buf, d]) : d;
          for (;;) {
            const h = buf.indexOf('\r\n\r\n');
            if (h < 0) return;
            const head = buf.subarray(0, h).toString('latin1');
            const m = /content-length:\s*(\d+)/i.exec(head);
            const len = m ? Number(m[1]) : 0;
            if (buf.length < h + 4 + len) return;
            if (!head.startsWith('HTTP/1.1 200')) onError(new Error(head.split('\r\n')[0]));
            else {
              ops++;
              lat.push((performance.now() - t0) * 1000);
            }
            buf = buf.subarray(h + 4 + len);
            send();
          }
        });
        s.on('error', (e) => {
          onError(e);
          resolve();
        });
        s.on('close', () => resolve());
        send();
      });
    }
  };

  const loop = spec.mode === 'handshake' ? handshakeLoop : keepAliveLoop;
  await Promise.all(Array.from({ length: spec.connections }, () => loop()));
  const wallMs = performance.now() - start;
  lat.sort((a, b) => a - b);
  const result: TlsLoadResult = {
    ops,
    errors,
    ...(firstError ? { firstError } : {}),
    wallMs,
    perSecond: (ops / wallMs) * 1000,
    p50Us: percentile(lat, 50),
    p99Us: percentile(lat, 99),
    stapled,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
