import { resolve } from 'node:path';
import { format } from 'node:util';
import { setLogger as setGrpcLogger } from '@grpc/grpc-js';
import { Command, Option } from 'commander';
import { AGENT_KEY_TYPES, Agent, DEFAULT_CA_SERVER_NAME, parseAgentKeyType, parseListenAddress, type CertificateEvent, type FailureEvent } from '../../agent/index.js';
import { ErrorCodes, MeshError, createLogger, parseDuration } from '../../core/index.js';
import { printText, usageError } from '../output.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

interface AgentOpts {
  caAddress: string;
  caRoot: string;
  caServerName: string;
  tokenFile?: string;
  bootstrapTokenFile?: string;
  spiffeId?: string;
  outDir?: string;
  sdsUds?: string;
  certTtl: string;
  renewAt: string;
  renewJitter: string;
  retryInitial: string;
  retryMax: string;
  key: string;
  adminListen?: string;
  onRotate?: string;
  logLevel?: string;
}

function fraction(text: string, option: string, min: number, max: number, inclusiveMin: boolean): number {
  const n = Number(text);
  const okMin = inclusiveMin ? n >= min : n > min;
  if (text.trim() === '' || !Number.isFinite(n) || !okMin || !(n < max)) {
    throw usageError(`${option}: "${text}" is not a fraction in ${inclusiveMin ? '[' : '('}${min}, ${max}), e.g. ${option === '--renew-at' ? '0.66' : '0.1'}`);
  }
  return n;
}

export function agentCommand(): Command {
  return new Command('agent')
    .description('the workload agent: makes a key here, gets a SPIFFE certificate from the CA, rotates it, writes it to files and serves it to the local proxy over SDS')
    .requiredOption('--ca-address <host:port>', 'the CA\'s Istio CA API (gRPC over TLS), e.g. 127.0.0.1:15012')
    .requiredOption('--ca-root <file>', 'trust bundle that verifies the CA (its root-cert.pem); re-read when it changes, and part of the trust bundle served')
    .option('--ca-server-name <name>', 'name to verify in the CA\'s serving certificate', DEFAULT_CA_SERVER_NAME)
    .option('--token-file <file>', 'Kubernetes service-account token (JWT), re-read when it changes; used for every request')
    .option('--bootstrap-token-file <file>', 'bootstrap token for the first certificate; renewals then use the current certificate')
    .option('--spiffe-id <id>', 'the SPIFFE ID this workload must get; certificates for another are rejected')
    .option('--out-dir <dir>', 'write cert-chain.pem, key.pem (0600) and root-cert.pem here (versioned folder, one symlink swap)')
    .option('--sds-uds <path>', 'serve Envoy SDS (resources "default" and "ROOTCA") on this Unix socket (mode 0600)')
    .option('--cert-ttl <duration>', 'requested lifetime; the CA may shorten it', '24h')
    .option('--renew-at <fraction>', 'renew when this fraction of the lifetime (from receipt to notAfter) has passed', '0.66')
    .option('--renew-jitter <fraction>', 'renew up to this fraction earlier, at random, so that agents spread out', '0.1')
    .option('--retry-initial <duration>', 'first retry delay after a failure (doubles each time, ± jitter)', '1s')
    .option('--retry-max <duration>', 'longest retry delay', '60s')
    .addOption(new Option('--key <type>', 'type of the workload key, made in memory for each certificate').choices([...AGENT_KEY_TYPES]).default('ec-p256'))
    .option('--admin-listen <host:port>', 'serve /healthz (200 only while a valid certificate is held) and /metrics here; port 0 = any free port')
    .option('--on-rotate <command>', 'run this shell command after each rotation (files in place, SDS pushed), e.g. "kill -HUP $(cat /run/proxy.pid)"')
    .addOption(new Option('--log-level <level>', 'log level of the JSON log on stderr (default: $MESHCERT_LOG_LEVEL or info)').choices([...LOG_LEVELS]))
    .addHelpText(
      'after',
      `
Credentials: --token-file (every request; the identity is the service account's), or --bootstrap-token-file (first
certificate; renewals use the current certificate; the token again only if that is refused or expired), or neither
when --out-dir already holds a current certificate (it is reused on start and renewed with itself).
Give --out-dir and/or --sds-uds. Each rotation makes a new key, checks the CA's answer (leaf for our key, the
expected SPIFFE ID, chain valid to the trust bundle, not expired), writes the files, then pushes SDS, then runs
--on-rotate. Files: OUT/cert-chain.pem, OUT/key.pem, OUT/root-cert.pem are symlinks through OUT/..data to a
version folder OUT/..TIME.RANDOM that is swapped in by one rename. On CA failure the agent keeps serving the
current certificate and retries; at expiry it stops serving it over SDS, /healthz turns 503 and it says so.
SIGHUP renews now; SIGINT/SIGTERM stop (exit 0).`,
    )
    .action(async (opts: AgentOpts) => {
      if (opts.tokenFile && opts.bootstrapTokenFile) throw usageError('agent: give at most one of --token-file and --bootstrap-token-file');
      if (!opts.outDir && !opts.sdsUds) throw usageError('agent: give --out-dir and/or --sds-uds: the certificate has to go somewhere');
      const certTtlMs = parseDuration(opts.certTtl, '--cert-ttl');
      if (certTtlMs < 1000) throw new MeshError(ErrorCodes.DURATION, '--cert-ttl: at least 1s', { subject: '--cert-ttl' });
      const rotation = {
        renewAt: fraction(opts.renewAt, '--renew-at', 0, 1, false),
        jitter: fraction(opts.renewJitter, '--renew-jitter', 0, 1, true),
        backoffInitialMs: parseDuration(opts.retryInitial, '--retry-initial'),
        backoffMaxMs: parseDuration(opts.retryMax, '--retry-max'),
      };
      if (rotation.backoffMaxMs < rotation.backoffInitialMs) throw usageError('agent: --retry-max is shorter than --retry-initial');
      const logger = createLogger({ level: opts.logLevel, name: 'meshcert-agent' });
      const grpcLog = logger.child({ component: 'grpc-js' });
      setGrpcLogger({ error: (...a: unknown[]) => grpcLog.warn(format(...a)), info: (...a: unknown[]) => grpcLog.debug(format(...a)), debug: (...a: unknown[]) => grpcLog.debug(format(...a)) });

      const agent = new Agent({
        caAddress: opts.caAddress,
        caRootFile: resolve(opts.caRoot),
        caServerName: opts.caServerName,
        ...(opts.tokenFile ? { tokenFile: resolve(opts.tokenFile) } : {}),
        ...(opts.bootstrapTokenFile ? { bootstrapTokenFile: resolve(opts.bootstrapTokenFile) } : {}),
        ...(opts.spiffeId ? { spiffeId: opts.spiffeId } : {}),
        ...(opts.outDir ? { outDir: resolve(opts.outDir) } : {}),
        ...(opts.sdsUds ? { sdsUds: resolve(opts.sdsUds.replace(/^unix:/, '')) } : {}),
        certTtlMs,
        rotation,
        keyType: parseAgentKeyType(opts.key),
        ...(opts.adminListen ? { adminListen: parseListenAddress(opts.adminListen) } : {}),
        ...(opts.onRotate ? { onRotate: opts.onRotate } : {}),
        logger,
      });
      agent.on('certificate', (e: CertificateEvent) =>
        printText(
          `${e.method === 'out-dir' ? 'reusing' : 'certificate'}: ${e.spiffeId} serial ${e.serial}, valid until ${e.notAfter.toISOString()}` +
            `${e.version ? `, files version ${e.version}` : ''}; next renewal at ${e.renewalAt.toISOString()}`,
        ),
      );
      agent.on('failure', (e: FailureEvent) =>
        printText(
          `renewal failed (attempt ${e.failures}): ${e.error.message} [${e.error.code}]; ` +
            `${e.servingUntil ? `still serving the current certificate until ${e.servingUntil.toISOString()}` : 'no valid certificate is served'}; retry at ${e.retryAt.toISOString()}`,
        ),
      );
      agent.on('expired', (e: { notAfter: Date; spiffeId: string }) =>
        printText(`EXPIRED: the certificate for ${e.spiffeId} expired at ${e.notAfter.toISOString()}; it is no longer served and /healthz reports 503; still trying to renew`),
      );
      agent.on('trust-bundle', (e: { roots: number; source: string }) => printText(`trust bundle: ${e.roots} root(s), from ${e.source}`));

      let stopSignal: (sig: NodeJS.Signals) => void = () => undefined;
      const stopped = new Promise<NodeJS.Signals>((r) => (stopSignal = r));
      const onHup = () => {
        printText('SIGHUP: renewing now');
        agent.renewNow();
      };
      process.once('SIGINT', stopSignal);
      process.once('SIGTERM', stopSignal);
      process.on('SIGHUP', onHup);
      try {
        await agent.start();
        const { sdsUds, admin } = agent.addresses;
        const lines = [
          `meshcert agent: CA ${opts.caAddress} (TLS, server name ${opts.caServerName}), ` +
            `credential: ${opts.tokenFile ? `token ${opts.tokenFile}` : opts.bootstrapTokenFile ? `bootstrap token ${opts.bootstrapTokenFile}, then the current certificate` : 'the current certificate'}`,
        ];
        if (sdsUds) lines.push(`  SDS: unix:${sdsUds} (resources default and ROOTCA)`);
        if (opts.outDir) lines.push(`  files: ${resolve(opts.outDir)}/{cert-chain.pem,key.pem,root-cert.pem} (through ..data)`);
        if (admin) lines.push(`  health and metrics: http://${admin}/healthz  http://${admin}/metrics`);
        printText(lines.join('\n'));
        const sig = await stopped;
        logger.info({ signal: sig }, 'stopping');
        await agent.stop();
        printText(`meshcert agent: stopped (${sig})`);
      } finally {
        process.off('SIGINT', stopSignal);
        process.off('SIGTERM', stopSignal);
        process.off('SIGHUP', onHup);
        await agent.stop();
      }
    });
}
