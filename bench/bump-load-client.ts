/**
 * Load client for `npm run bench -- bump`, run as its own process (pinned to the other CPU): HTTPS GETs through an
 * explicit proxy (CONNECT, then TLS to the target through the tunnel, verified against the proxy's CA), either a new
 * proxy connection per request or kept-alive connections. Prints one JSON LoadResult on stdout.
 *
 * Usage: node --import tsx bench/bump-load-client.ts '<LoadSpec JSON>'
 */
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface LoadSpec {
  proxyHost: string;
  proxyPort: number;
  /** host:port the client asks the proxy to CONNECT to, and the SNI / Host. */
  targetHost: string;
  targetPort: number;
  path: string;
  caPem: string;
  keepAlive: boolean;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

export interface LoadResult {
  requests: number;
  errors: number;
  firstError: string | null;
  seconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

function tunnel(spec: LoadSpec): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw: Socket = netConnect(spec.proxyPort, spec.proxyHost);
    raw.setNoDelay(true);
    raw.once('error', reject);
    raw.once('connect', () => raw.write(`CONNECT ${spec.targetHost}:${spec.targetPort} HTTP/1.1\r\nHost: ${spec.targetHost}:${spec.targetPort}\r\n\r\n`));
    let head = '';
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      raw.off('data', onData);
      raw.pause();
      if (!/^HTTP\/1\.[01] 200/.test(head)) {
        raw.destroy();
        reject(new Error(`proxy answered CONNECT with ${head.split('\r\n')[0]}`));
        return;
      }
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      if (rest.length) raw.unshift(rest);
      const tls = tlsConnect({ socket: raw, servername: spec.targetHost, ca: spec.caPem, ALPNProtocols: ['http/1.1'] });
      tls.once('secureConnect', () => resolve(tls));
      tls.once('error', reject);
    };
    raw.on('data', onData);
  });
}

/** An https agent whose connections are CONNECT tunnels through the proxy. */
function tunnelAgent(spec: LoadSpec, keepAlive: boolean): HttpsAgent {
  const agent = new HttpsAgent({ keepAlive, maxSockets: spec.concurrency, maxFreeSockets: spec.concurrency });
  (agent as unknown as { createConnection: unknown }).createConnection = (_o: unknown, cb: (err: Error | null, s?: Socket) => void) => {
    tunnel(spec).then(
      (s) => cb(null, s),
      (e: Error) => cb(e),
    );
    return undefined;
  };
  return agent;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
  const agent = tunnelAgent(spec, spec.keepAlive);
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      // A new connection per request: an agent of its own, since an agent without keep-alive may still hand a
      // socket that answered `connection: close` to a waiting request (a bare Node server then answers 400).
      const connection = spec.keepAlive ? agent : tunnelAgent(spec, false);
      const req = httpsRequest(
        { agent: connection, host: spec.targetHost, port: spec.targetPort, path: spec.path, headers: spec.keepAlive ? {} : { connection: 'close' } },
        (res) => {
          res.on('data', () => undefined);
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  let measuring = false;
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const t = performance.now();
      try {
        await one();
        if (measuring) latencies.push(performance.now() - t);
      } catch (err) {
        if (measuring) errors++;
        firstError ??= (err as Error).message;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  const workers = Array.from({ length: spec.concurrency }, () => worker());
  await new Promise((r) => setTimeout(r, spec.warmupMs));
  measuring = true;
  const started = performance.now();
  // The parent reads the proxy's CPU time when it sees this line, and again at the result.
  process.stderr.write('MEASURING\n');
  await new Promise((r) => setTimeout(r, spec.durationMs));
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  process.stderr.write('DONE\n');
  stop = true;
  await Promise.race([Promise.all(workers), new Promise((r) => setTimeout(r, 3000))]);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  const result: LoadResult = {
    requests: latencies.length,
    errors,
    firstError,
    seconds,
    requestsPerSecond: latencies.length / seconds,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

await main();
