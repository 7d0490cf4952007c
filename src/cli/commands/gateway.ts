import { readFileSync } from 'node:fs';
import { format } from 'node:util';
import { setLogger as setGrpcLogger } from '@grpc/grpc-js';
import { Command, Option } from 'commander';
import { listenAddress } from '../../config/index.js';
import { createLogger, describeError, ErrorCodes, MeshError } from '../../core/index.js';
import { Gateway, type CredentialSourceOptions } from '../../gateway/index.js';
import type { OcspPolicy } from '../../secrets/index.js';
import { sdsClientCredentials } from '../../sds/index.js';
import { resolveDataDir } from '../data-dir.js';
import { collectPolicy } from '../policy-option.js';
import { printText, usageError } from '../output.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

interface GatewayFlags {
  file: string;
  secrets?: string[];
  sds?: string;
  sdsCa?: string;
  sdsCert?: string;
  sdsKey?: string;
  sdsServerName?: string;
  adminListen?: string;
  bind?: string;
  logLevel?: string;
  dataDir?: string;
  fetchStaples: 'wanted' | 'all' | 'off';
  policy?: Record<string, OcspPolicy>;
}

function readPem(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${flag} ${path}: ${describeError(err)}`, { subject: path });
  }
}

function credentialSource(o: GatewayFlags): CredentialSourceOptions {
  if (o.secrets && o.sds) throw usageError('give --secrets DIR or --sds TARGET, not both');
  if (o.secrets) {
    if (o.sdsCa || o.sdsCert || o.sdsKey) throw usageError('--sds-ca, --sds-cert and --sds-key go with --sds HOST:PORT');
    return { secrets: o.secrets, ...(o.policy ? { policies: o.policy } : {}) };
  }
  if (!o.sds) throw usageError('where do certificates come from? give --secrets DIR or --sds unix:PATH | --sds HOST:PORT --sds-ca FILE');
  if (o.sds.startsWith('unix:')) {
    if (o.sdsCa || o.sdsCert || o.sdsKey) throw usageError('--sds unix:PATH is plain gRPC on a local socket: --sds-ca, --sds-cert and --sds-key are for --sds HOST:PORT');
    return { sds: { target: o.sds }, ...(o.policy ? { policies: o.policy } : {}) };
  }
  if (!listenAddress.safeParse(o.sds).success) throw usageError(`--sds ${o.sds}: expected unix:PATH or HOST:PORT`);
  if (!o.sdsCa) throw usageError(`--sds ${o.sds} is a TLS connection: give --sds-ca FILE (the CA of the SDS server's certificate)`);
  if ((o.sdsCert === undefined) !== (o.sdsKey === undefined)) throw usageError('give --sds-cert and --sds-key together (mTLS to the SDS server)');
  const credentials = sdsClientCredentials({
    rootCertsPem: readPem(o.sdsCa, '--sds-ca'),
    ...(o.sdsCert && o.sdsKey ? { certChainPem: readPem(o.sdsCert, '--sds-cert'), keyPem: readPem(o.sdsKey, '--sds-key') } : {}),
  });
  return { sds: { target: o.sds, credentials, ...(o.sdsServerName ? { serverName: o.sdsServerName } : {}) }, ...(o.policy ? { policies: o.policy } : {}) };
}

export function gatewayCommand(): Command {
  return new Command('gateway')
    .description('run the TLS gateway: Istio Gateway/VirtualService/DestinationRule resources, certificates from a secrets folder or SDS, OCSP stapling, mTLS with CRLs, async client validation, AuthorizationPolicy, HTTP/1.1 and HTTP/2 proxying')
    .requiredOption('-f, --file <file>', 'the gateway file: Gateway, VirtualService, DestinationRule, AuthorizationPolicy and GatewayOptions documents (watched)')
    .option('--secrets <dir...>', 'secrets folder(s): Kubernetes Secret manifests and/or mounted secret folders (watched)')
    .option('--sds <target>', 'SDS server: unix:PATH (plain gRPC) or HOST:PORT (TLS, with --sds-ca)')
    .option('--sds-ca <file>', 'CA certificate(s) of the SDS server (with --sds HOST:PORT)')
    .option('--sds-cert <file>', 'client certificate chain for mTLS to the SDS server')
    .option('--sds-key <file>', 'client key for mTLS to the SDS server')
    .option('--sds-server-name <name>', 'the name to verify in the SDS server certificate, when not the host of --sds')
    .option('--admin-listen <host:port>', "admin listener (/metrics, /healthz, /config_dump); overrides GatewayOptions' admin.listen")
    .option('--bind <address>', 'address for servers without `bind` (default 0.0.0.0)')
    .addOption(
      new Option('--fetch-staples <which>', 'with --secrets: fetch OCSP staples from the certificates\' responders and keep them fresh (wanted: a policy, must-staple or an own staple)')
        .choices(['wanted', 'all', 'off'])
        .default('wanted'),
    )
    .option('--policy <name=policy>', 'stapling policy (OPTIONAL, PREFERRED, MANDATORY) of a credential without the annotation: over SDS, or mounted folders; repeatable', collectPolicy)
    .option('--data-dir <dir>', 'where fetched staples are cached (DATA-DIR/ocsp-staples; default: $MESHCERT_DATA_DIR or ./.meshcert)')
    .addOption(new Option('--log-level <level>', 'log level of the JSON log on stderr (default: $MESHCERT_LOG_LEVEL or info)').choices([...LOG_LEVELS]))
    .addHelpText(
      'after',
      `
Each port reads the ClientHello first and picks the server by SNI (exact host, then wildcard, then "*"; without
SNI the "*" server or the port's first), then runs TLS with that server's own versions, cipher suites, curves,
signature algorithms and client-certificate settings; PASSTHROUGH servers splice the bytes to the tls route's
destination by SNI. Certificates: secret NAME for credentialName NAME (its CA side, or NAME-cacert, verifies
MUTUAL clients); ISTIO_MUTUAL uses SDS "default" and "ROOTCA" (with --secrets: the secret named default).
OCSP staples follow the kubernetes.io/ocsp-policy annotation (DESIGN.md's table); with --secrets they are fetched
from the certificates' responders and refreshed at half their validity (cached in DATA-DIR/ocsp-staples).
MUTUAL clients may be checked further by GatewayOptions.validation (their OCSP responder, an HTTP policy service)
before any request goes upstream, and every HTTP request by the file's AuthorizationPolicies (DENY, then ALLOW). The file and the secrets are
watched: changes apply to new connections without a restart; a file that does not load keeps the running
configuration and logs why. Access logs are JSON lines on stderr. Stops on SIGINT or SIGTERM (exit 0).`,
    )
    .action(async (opts: GatewayFlags) => {
      const credentials = credentialSource(opts);
      let admin: { host: string; port: number } | undefined;
      if (opts.adminListen) {
        const a = listenAddress.safeParse(opts.adminListen);
        if (!a.success) throw usageError(`--admin-listen ${opts.adminListen}: expected HOST:PORT (e.g. 127.0.0.1:15000)`);
        admin = a.data;
      }
      const logger = createLogger({ level: opts.logLevel, name: 'meshcert-gateway' });
      const grpcLog = logger.child({ component: 'grpc-js' });
      setGrpcLogger({ error: (...a: unknown[]) => grpcLog.warn(format(...a)), info: (...a: unknown[]) => grpcLog.debug(format(...a)), debug: (...a: unknown[]) => grpcLog.debug(format(...a)) });
      let stopSignal: (sig: NodeJS.Signals) => void = () => undefined;
      const stopped = new Promise<NodeJS.Signals>((resolve) => (stopSignal = resolve));
      process.once('SIGINT', stopSignal);
      process.once('SIGTERM', stopSignal);
      let gw: Gateway | undefined;
      try {
        gw = await Gateway.start({
          file: opts.file,
          credentials,
          adminListen: admin,
          logger,
          fetchStaples: opts.fetchStaples,
          dataDir: resolveDataDir(opts.dataDir),
          ...(opts.bind ? { defaultBind: opts.bind } : {}),
        });
        const lines = [`meshcert gateway: ${opts.file}, certificates from ${'secrets' in credentials ? `secrets folder ${credentials.secrets.join(', ')}` : `SDS ${credentials.sds.target}`}`];
        for (const l of (gw.configDump().listeners as Array<{ port: number; boundPort: number; bind: string; servers: Array<{ id: string; mode: string; hosts: string[] }> }>)) {
          lines.push(`  port ${l.port} on ${l.bind}:${l.boundPort}: ${l.servers.map((s) => `${s.id} ${s.mode} [${s.hosts.join(', ')}]`).join('; ')}`);
        }
        const a = gw.adminAddress;
        if (a) lines.push(`  admin: http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/ (/metrics, /healthz, /config_dump)`);
        printText(lines.join('\n'));
        const sig = await stopped;
        logger.info({ signal: sig }, 'stopping');
        await gw.close();
        printText(`meshcert gateway: stopped (${sig})`);
      } finally {
        process.off('SIGINT', stopSignal);
        process.off('SIGTERM', stopSignal);
        await gw?.close();
      }
    });
}
