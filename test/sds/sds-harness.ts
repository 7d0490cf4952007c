// A real SDS server over a folder of secrets, as `meshcert serve` will run it: SecretSource → GatewaySecretProvider
// → SdsServer on a TLS listener on 127.0.0.1 and on a Unix socket; and clients for it.
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { SecretSource, registerSecretMetrics, type OcspPolicy } from '../../src/secrets/index.js';
import {
  GatewaySecretProvider,
  SdsClient,
  SdsMetrics,
  SdsServer,
  sdsClientCredentials,
  sdsServerCredentials,
  type SdsAuthorization,
} from '../../src/sds/index.js';
import { TestCA, type IssuedLeaf } from '../helpers/test-ca.js';

export interface Harness {
  source: SecretSource;
  provider: GatewaySecretProvider;
  server: SdsServer;
  registry: Registry;
  /** The server's log lines, parsed. */
  logs: Array<Record<string, unknown>>;
  /** The CA of the TLS listener (server and client certificates). */
  ca: TestCA;
  serving: IssuedLeaf;
  socket: string;
  port: number;
  /** A client on the Unix socket. */
  udsClient(names: string[]): SdsClient;
  /** A client on the TLS listener, with a client certificate for `spiffeId`. */
  tlsClient(names: string[], spiffeId?: string): Promise<SdsClient>;
  /** Restarts the server on the same socket and port (a crash with `kill`, or a clean stop). */
  restart(how: 'kill' | 'close'): Promise<void>;
  metrics(): Promise<string>;
  close(): Promise<void>;
}

export function captureLogger(lines: Array<Record<string, unknown>>): Logger {
  return pino(
    { level: 'debug' },
    new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    }),
  );
}

export async function startHarness(
  secretsDir: string,
  workDir: string,
  options: { policies?: Record<string, OcspPolicy>; authorization?: SdsAuthorization } = {},
): Promise<Harness> {
  const logs: Array<Record<string, unknown>> = [];
  const logger = captureLogger(logs);
  const registry = new Registry();
  const source = SecretSource.open({ paths: [secretsDir], logger, ...(options.policies ? { policies: options.policies } : {}) });
  registerSecretMetrics(registry, source);
  const provider = new GatewaySecretProvider(source);
  const metrics = new SdsMetrics(registry);
  const ca = await TestCA.root({ name: 'sds listener CA' });
  const serving = await ca.issueServer(['sds.meshcert.test'], { sans: [{ type: 'dns', value: 'sds.meshcert.test' }, { type: 'ip', value: '127.0.0.1' }] });
  const socket = join(workDir, 'sds.sock');
  const credentials = () => sdsServerCredentials({ certChainPem: serving.chainPem, keyPem: serving.keyPem, clientCaPem: ca.cert.pem });
  const start = (port: number) =>
    SdsServer.start({
      provider,
      logger,
      metrics,
      uds: socket,
      listen: { host: '127.0.0.1', port, credentials: credentials() },
      ...(options.authorization ? { authorization: options.authorization } : {}),
    });
  let server = await start(0);
  const port = server.addresses.listen!.port;
  const clients: SdsClient[] = [];
  const h: Harness = {
    source,
    provider,
    get server() {
      return server;
    },
    registry,
    logs,
    ca,
    serving,
    socket,
    port,
    udsClient(names) {
      const c = new SdsClient({ target: `unix:${socket}`, names, node: { id: 'router~test', cluster: 'ingress' }, logger, backoff: { initialMs: 50, maxMs: 500 } });
      clients.push(c);
      return c.start();
    },
    async tlsClient(names, spiffeId = 'spiffe://cluster.local/ns/istio-system/sa/ingress') {
      const leaf = await ca.issueSvid(spiffeId);
      const c = new SdsClient({
        target: `127.0.0.1:${port}`,
        credentials: sdsClientCredentials({ rootCertsPem: ca.cert.pem, certChainPem: leaf.chainPem, keyPem: leaf.keyPem }),
        serverName: 'sds.meshcert.test',
        names,
        node: { id: 'router~tls', cluster: 'ingress' },
        logger,
        backoff: { initialMs: 50, maxMs: 500 },
      });
      clients.push(c);
      return c.start();
    },
    async restart(how) {
      if (how === 'kill') server.kill();
      else await server.close();
      server = await start(port);
    },
    metrics: () => registry.metrics(),
    async close() {
      for (const c of clients) c.close();
      await server.close(500);
      source.close();
    },
  };
  return h;
}
