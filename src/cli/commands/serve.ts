import { join } from 'node:path';
import { format } from 'node:util';
import { setLogger as setGrpcLogger } from '@grpc/grpc-js';
import { Command, Option } from 'commander';
import { caPaths } from '../../ca/index.js';
import { defaultServeConfig, loadServeConfig, type ServeConfig } from '../../config/index.js';
import { createLogger } from '../../core/index.js';
import { ControlPlane } from '../../server/index.js';
import { DATA_DIR_HELP, resolveDataDir } from '../data-dir.js';
import { printText } from '../output.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the control plane: the Istio CA gRPC API, the OCSP responder and CRL endpoint, the admin API, health and metrics')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--config <file>', 'YAML configuration; without it everything runs on loopback with defaults')
    .addOption(new Option('--log-level <level>', 'log level of the JSON log on stderr (default: $MESHCERT_LOG_LEVEL or info)').choices([...LOG_LEVELS]))
    .addHelpText(
      'after',
      `
Without --config: the CA gRPC API on 127.0.0.1:15012 (TLS, server name istiod.istio-system.svc or localhost),
HTTP on http://127.0.0.1:15014 (POST /ocsp, GET /ocsp/REQUEST, /crl, /roots, /healthz, /metrics), the admin API
on 127.0.0.1:15016 (POST /revoke, GET /certificates; bearer token in DATA-DIR/admin-token, made on first start),
client-certificate renewal on. On the first start the CA is created in the data dir, with a one-time bootstrap
token (DATA-DIR/bootstrap-token, valid 24h, for spiffe://TRUST-DOMAIN/ns/default/sa/default) and the
\`meshcert cert request\` line that uses it.
OCSP responses are signed by a delegated signer the server issues itself, cached and re-signed at half their
validity; request nonces are not echoed (RFC 5019), so \`openssl ocsp\` needs -no_nonce to stay quiet.
With --config, a section that is absent is off; a config with only an sds section serves Envoy SDS alone, with
no mesh CA in the data dir (sds.uds defaults to DATA-DIR/sds.sock). Stops cleanly on SIGINT or SIGTERM (exit 0).

More trust domains, each signed for by a CA of its own (the main one stays in the data dir):
  trustDomain: cluster.local
  additionalTrustDomains:
    - name: partner.example
      caDir: /etc/meshcert/partner   # optional; default DATA-DIR/trust-domains/NAME. A folder with no CA gets a
                                     # new root on first start; Istio's cacerts files are used as they are
  auth:
    jwt: [{ issuer: https://partner-cluster.example, audiences: [istio-ca], jwksFile: partner-jwks.json,
            trustDomain: partner.example }]   # its service accounts map into partner.example
A workload's certificate is signed by the CA of its identity's trust domain; cert_chain ends with that trust
domain's roots only (no federation). Bootstrap token identities may be in any of the trust domains. OCSP answers
for every CA at /ocsp; each other CA's CRL is at /crl/TRUST-DOMAIN; /roots lists every trust domain's roots,
labelled, and /roots/TRUST-DOMAIN one of them. POST /revoke takes "trustDomain" when a serial is ambiguous.`,
    )
    .action(async (opts: { dataDir?: string; config?: string; logLevel?: string }) => {
      const dataDir = resolveDataDir(opts.dataDir);
      const config = opts.config ? loadServeConfig(opts.config) : defaultServeConfig();
      const logger = createLogger({ level: opts.logLevel });
      // grpc-js writes its own errors (e.g. a failed bind) to the console: keep stderr one JSON log.
      const grpcLog = logger.child({ component: 'grpc-js' });
      setGrpcLogger({ error: (...a: unknown[]) => grpcLog.warn(format(...a)), info: (...a: unknown[]) => grpcLog.info(format(...a)), debug: (...a: unknown[]) => grpcLog.debug(format(...a)) });
      const cp = new ControlPlane();
      // Stop gracefully on the first signal (in-flight calls get the grace period); a second one kills at once (Node's default).
      let stopSignal: (sig: NodeJS.Signals) => void = () => undefined;
      const stopped = new Promise<NodeJS.Signals>((resolve) => (stopSignal = resolve));
      process.once('SIGINT', stopSignal);
      process.once('SIGTERM', stopSignal);
      try {
        await cp.start(config, dataDir, { logger, adoptCaTrustDomain: !opts.config, adoptCaPublicUrl: !opts.config, firstStartBootstrapToken: !opts.config });
        printText(startBanner(cp, dataDir, config));
        const sig = await stopped;
        logger.info({ signal: sig }, 'stopping');
        await cp.stop();
        printText(`meshcert serve: stopped (${sig})`);
      } finally {
        process.off('SIGINT', stopSignal);
        process.off('SIGTERM', stopSignal);
        await cp.stop();
      }
    });
}

function startBanner(cp: ControlPlane, dataDir: string, config: ServeConfig): string {
  const serverName = config.grpc?.dnsNames[0];
  const domains = cp.hasCa ? cp.signingDomains : [];
  const lines = [
    !cp.hasCa
      ? `meshcert serve: Envoy SDS only (no mesh CA: the config has only an sds section), data dir ${dataDir}`
      : domains.length > 1
        ? `meshcert serve: control plane for trust domains ${domains.map((d) => d.trustDomain).join(', ')}, data dir ${dataDir}`
        : `meshcert serve: control plane for trust domain ${cp.ca.trustDomain}, data dir ${dataDir}`,
  ];
  if (cp.createdCa) lines.push(`  created a new mesh CA in ${dataDir} (root-cert.pem is the trust bundle workloads need)`);
  // One line per trust domain: which CA signs for it, and where that CA lives.
  for (const d of domains) {
    const how = d.source === 'created' ? ', created now' : d.source === 'istio' ? ', Istio cacerts files used as they are' : '';
    lines.push(`  trust domain ${d.trustDomain}: CA "${d.ca.cert.subject}" in ${d.folder}${how}`);
  }
  if (cp.addresses.grpc) lines.push(`  CA gRPC API (istio.v1.auth.IstioCertificateService): ${cp.addresses.grpc} (TLS, server name ${serverName})`);
  if (cp.addresses.http) {
    const base = `http://${cp.addresses.http}`;
    lines.push(`  health and metrics: ${base}/healthz  ${base}/metrics`);
    lines.push(`  OCSP responder: ${base}/ocsp  CRL: ${base}/crl  trust bundle: ${base}/roots`);
    for (const d of domains.filter((x) => !x.main)) lines.push(`    CRL of trust domain ${d.trustDomain}: ${base}${d.crlPath}  its roots: ${base}/roots/${d.trustDomain}`);
    lines.push(
      cp.publicUrl
        ? `  written into issued certificates: ${cp.publicUrl}/ocsp (AIA) and ${cp.publicUrl}/crl (CRL distribution point${domains.length > 1 ? `; ${cp.publicUrl}/crl/TRUST-DOMAIN for the other trust domains` : ''})`
        : '  no http.publicUrl: issued certificates carry no OCSP URL and no CRL distribution point',
    );
  }
  if (cp.addresses.admin && cp.adminToken) {
    lines.push(`  admin API: http://${cp.addresses.admin} (token in ${cp.adminToken.file}${cp.adminToken.created ? ', made now' : ''})`);
    lines.push(`    revoke: meshcert cert revoke --server http://${cp.addresses.admin} --token-file ${cp.adminToken.file} SERIAL [--reason REASON]`);
  }
  if (cp.addresses.sds && config.sds) {
    const sds = cp.addresses.sds;
    lines.push(`  Envoy SDS (envoy.service.secret.v3.SecretDiscoveryService), secrets from ${config.sds.secrets}:`);
    lines.push(`    Unix socket: unix:${sds.uds} (plain gRPC, mode 0600)`);
    if (sds.listen) {
      const cert = config.sds.certFile ? `certificate ${config.sds.certFile}` : `certificate from the mesh CA, server name ${serverName ?? 'istiod.istio-system.svc'}`;
      lines.push(`    TLS: ${sds.listen} (${cert}${config.sds.clientCaFile ? `, client certificates required (${config.sds.clientCaFile})` : ''})`);
    }
    lines.push(`    resources: kubernetes://NAME and kubernetes://NAME-cacert; check them with: meshcert secret check ${config.sds.secrets}`);
  }
  if (cp.addresses.grpc) {
    const root = caPaths(dataDir).rootCert;
    const request = `meshcert cert request --ca-address ${cp.addresses.grpc} --ca-root ${root} --ca-server-name ${serverName}`;
    const auth = config.auth;
    if (!auth || (!auth.jwt.length && !auth.bootstrapTokens && !auth.clientCertificates && !cp.firstToken)) {
      lines.push('No authenticator is configured (the auth section of the config): every certificate request will be refused.');
    } else if (cp.firstToken) {
      lines.push(
        `First certificate (for ${cp.firstToken.identity}, with the one-time bootstrap token made on the first start, valid until ${cp.firstToken.expires.toISOString()}):`,
        `  ${request} --bootstrap-token-file ${cp.firstToken.tokenFile} --out-dir ./workload`,
      );
    } else {
      lines.push(
        'First certificate: with a bootstrap token, a service-account JWT, or a current certificate of this CA:',
        `  ${request} (--bootstrap-token-file FILE | --token-file FILE | --cert-chain ${join('DIR', 'cert-chain.pem')} --key ${join('DIR', 'key.pem')}) --out-dir ./workload`,
      );
    }
  }
  return lines.join('\n');
}
