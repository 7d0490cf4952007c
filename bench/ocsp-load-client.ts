/**
 * The load client of `npm run bench -- ocsp`, run as its own process (pinned to another CPU than the server, and
 * for `openssl ocsp` inside the responder's network namespace): raw HTTP/1.1 over TCP, so that the client's own
 * cost per request stays a few µs and the same client drives every responder. Each connection sends one request,
 * reads the whole response (Content-Length, or to close), records the latency and sends the next; a server that
 * closes the connection (`openssl ocsp`) gets a new one per request.
 *
 *   node --import tsx bench/ocsp-load-client.ts SPEC.json   → prints one JSON line of results on stdout
 *
 * SPEC: { host, port, requests: [{ method, path, body? (base64) }], connections, durationMs, keepAlive, saveFirst? }
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';

export interface LoadSpec {
  host: string;
  port: number;
  requests: Array<{ method: 'GET' | 'POST'; path: string; body?: string }>;
  connections: number;
  durationMs: number;
  keepAlive: boolean;
  /** Writes the body of the first response to requests[0] here, for the caller to check that it is right. */
  saveFirst?: string;
}

export interface LoadResult {
  requests: number;
  /** Responses that were not 200, and connection errors. */
  errors: number;
  statuses: Record<string, number>;
  wallMs: number;
  perSecond: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** Connections opened (1 per connection with keep-alive; 1 per request without). */
  connects: number;
  /** Bytes of the first response body per request, to check that every server answered in full. */
  bodyBytes: number[];
  firstError?: string;
}

function wire(spec: LoadSpec): Buffer[] {
  return spec.requests.map((r) => {
    const body = r.body ? Buffer.from(r.body, 'base64') : Buffer.alloc(0);
    const head =
      `${r.method} ${r.path} HTTP/1.1\r\nHost: ${spec.host}:${spec.port}\r\n` +
      (r.method === 'POST' ? `Content-Type: application/ocsp-request\r\nContent-Length: ${body.length}\r\n` : '') +
      (spec.keepAlive ? '' : 'Connection: close\r\n') +
      '\r\n';
    return Buffer.concat([Buffer.from(head, 'latin1'), body]);
  });
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const reqs = wire(spec);
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const bodyBytes = new Array<number>(reqs.length).fill(-1);
  let next = 0;
  let errors = 0;
  let connects = 0;
  let firstError: string | undefined;
  let saved = false;
  const t0 = performance.now();
  const deadline = t0 + spec.durationMs;

  const worker = (): Promise<void> =>
    new Promise((done) => {
      let sock: Socket | null = null;
      let buf: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      let index = 0;
      let want = -1; // total bytes of the current response (head + body), -1 until the head is read
      let toClose = false;
      let status = 0;
      let headLen = 0;

      const finish = (): void => {
        sock?.destroy();
        sock = null;
        done();
      };
      const fail = (why: string): void => {
        errors++;
        firstError ??= why;
        sock?.destroy();
        sock = null;
        if (performance.now() >= deadline) return done();
        setTimeout(open, 10);
      };
      const send = (): void => {
        if (performance.now() >= deadline) return finish();
        if (!sock) return open();
        write();
      };
      const write = (): void => {
        index = next++ % reqs.length;
        buf = Buffer.alloc(0);
        want = -1;
        sentAt = performance.now();
        sock!.write(reqs[index]!);
      };
      const complete = (end: number): void => {
        latencies.push((performance.now() - sentAt) * 1000);
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status !== 200) {
          errors++;
          firstError ??= `HTTP ${status}`;
        }
        if (bodyBytes[index] === -1) bodyBytes[index] = end - headLen;
        if (spec.saveFirst && !saved && index === 0) {
          saved = true;
          writeFileSync(spec.saveFirst, buf.subarray(headLen, end));
        }
        if (toClose || !spec.keepAlive) {
          sock?.removeAllListeners();
          sock?.destroy();
          sock = null;
        }
        send();
      };
      const onData = (chunk: Buffer): void => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        if (want < 0) {
          const at = buf.indexOf(CRLFCRLF);
          if (at < 0) return;
          headLen = at + 4;
          const head = buf.subarray(0, at).toString('latin1');
          status = Number(head.slice(9, 12));
          const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
          toClose = /\r\nconnection:\s*close/i.test(head) || head.startsWith('HTTP/1.0');
          want = cl ? headLen + Number(cl[1]) : Infinity;
        }
        if (buf.length >= want) complete(want);
      };
      const open = (): void => {
        // Never a connection without a request: `openssl ocsp` waits on such a connection for good.
        if (performance.now() >= deadline) return finish();
        connects++;
        const s = connect({ host: spec.host, port: spec.port, noDelay: true });
        sock = s;
        s.on('connect', write);
        s.on('data', onData);
        s.on('error', (err) => fail(err.message));
        s.on('close', () => {
          if (sock !== s) return;
          // Close-delimited body (no Content-Length): the response ends with the connection.
          if (want === Infinity) {
            sock = null;
            toClose = true;
            complete(buf.length);
          } else if (want > 0 || buf.length > 0) fail('connection closed mid-response');
          else if (performance.now() < deadline) {
            sock = null;
            open();
          } else done();
        });
      };
      open();
    });

  await Promise.all(Array.from({ length: spec.connections }, worker));
  const wallMs = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]! : NaN);
  const ok = latencies.length;
  return {
    requests: ok,
    errors,
    statuses,
    wallMs,
    perSecond: (ok / wallMs) * 1000,
    p50Us: pct(0.5),
    p99Us: pct(0.99),
    maxUs: latencies.length ? latencies[latencies.length - 1]! : NaN,
    connects,
    bodyBytes,
    ...(firstError ? { firstError } : {}),
  };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/')) && process.argv[2]) {
  const spec = JSON.parse(readFileSync(process.argv[2], 'utf8')) as LoadSpec;
  runLoad(spec).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (err: unknown) => {
      process.stderr.write(`${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
