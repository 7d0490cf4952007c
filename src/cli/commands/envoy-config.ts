import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { stringify } from 'yaml';
import {
  buildEnvoyBootstrap,
  loadGatewayFile,
  type EnvoyStaplePolicyName,
  type GatewayFileConfig,
  type SdsEndpoint,
} from '../../config/index.js';
import { ErrorCodes, MeshError } from '../../core/index.js';
import { checkSecrets, type OcspPolicy, type SecretCheckReport } from '../../secrets/index.js';
import { DATA_DIR_HELP, resolveDataDir } from '../data-dir.js';
import { printJson, printText, usageError } from '../output.js';
import { collectPolicy } from '../policy-option.js';

interface EnvoyConfigOptions {
  file: string;
  secrets: string;
  sdsAddress?: string;
  sdsCa?: string;
  sdsCert?: string;
  sdsKey?: string;
  sdsServerName?: string;
  dataDir?: string;
  nodeId?: string;
  policy?: Record<string, OcspPolicy>;
  workloadSdsAddress?: string;
  json?: boolean;
}

/** `unix:PATH` or HOST:PORT (IPv6 in brackets) into an SDS endpoint; TCP needs the CA that verifies meshcert. */
function sdsEndpoint(opts: EnvoyConfigOptions): SdsEndpoint {
  // meshcert serve's default socket when sds.uds is not set (src/server's defaultSdsSocket).
  const addr = opts.sdsAddress ?? `unix:${join(resolveDataDir(opts.dataDir), 'sds.sock')}`;
  if (addr.startsWith('unix:')) {
    const path = addr.slice('unix:'.length);
    if (!path) throw usageError('--sds-address: "unix:" needs a socket path (unix:/run/meshcert/sds.sock)');
    if (opts.sdsCa || opts.sdsCert || opts.sdsKey) throw usageError('--sds-ca, --sds-cert and --sds-key are for a TCP --sds-address; the Unix socket is plain gRPC');
    return { kind: 'uds', path: resolve(path) };
  }
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535 || (m[1] !== undefined && isIP(m[1]) !== 6)) {
    throw usageError(`--sds-address: "${addr}" is not unix:PATH or HOST:PORT (e.g. 127.0.0.1:15011)`);
  }
  if (!opts.sdsCa) throw usageError('--sds-address HOST:PORT is gRPC with TLS: give --sds-ca FILE, the CA that signed meshcert serve\'s SDS certificate');
  if ((opts.sdsCert === undefined) !== (opts.sdsKey === undefined)) throw usageError('give --sds-cert and --sds-key together (Envoy\'s client certificate for SDS with mTLS)');
  const host = (m[1] ?? m[2])!;
  return {
    kind: 'tcp',
    host,
    port,
    caFile: resolve(opts.sdsCa),
    ...(opts.sdsCert ? { certFile: resolve(opts.sdsCert), keyFile: resolve(opts.sdsKey!) } : {}),
    ...(opts.sdsServerName ? { serverName: opts.sdsServerName } : isIP(host) ? {} : { serverName: host }),
  };
}

/**
 * Each credential's Envoy stapling policy from the secrets folder, and checks that every credential a server uses
 * is there (the CA side too for MUTUAL): Envoy would otherwise wait forever for a secret that never comes.
 */
function staplePolicies(cfg: GatewayFileConfig, report: SecretCheckReport, secretsDir: string, warnings: string[]): Record<string, EnvoyStaplePolicyName> {
  const byName = new Map(report.secrets.map((s) => [s.name, s]));
  const out: Record<string, EnvoyStaplePolicyName> = {};
  const problems: string[] = [];
  for (const gw of cfg.gateways) {
    gw.spec.servers.forEach((s, i) => {
      const t = s.tls;
      if (!t || t.credentialName === undefined || (t.mode !== 'SIMPLE' && t.mode !== 'MUTUAL')) return;
      const at = `Gateway ${gw.name} spec.servers[${i}].tls.credentialName`;
      const name = t.credentialName;
      const secret = byName.get(name);
      if (!secret || !secret.certificate) {
        problems.push(`${at}: secret ${name} ${secret ? 'has no certificate and key' : 'is not in the secrets folder'} (${secretsDir})`);
        return;
      }
      if (t.mode === 'MUTUAL' && !secret.ca && !byName.get(`${name}-cacert`)?.ca) {
        problems.push(`${at}: MUTUAL needs CA certificates: ca.crt in secret ${name}, or a secret ${name}-cacert (${secretsDir})`);
      }
      if (!secret.servable) warnings.push(`secret ${name} (${secret.source}): ${secret.verdict}`);
      out[name] = secret.policy?.envoy ?? 'LENIENT_STAPLING';
    });
  }
  for (const dr of cfg.destinationRules) {
    const tlsList = [dr.spec.trafficPolicy?.tls, ...(dr.spec.trafficPolicy?.portLevelSettings ?? []).map((p) => p.tls), ...(dr.spec.subsets ?? []).map((s) => s.trafficPolicy?.tls)];
    for (const t of tlsList) {
      if (t?.credentialName && !byName.has(t.credentialName) && !byName.has(`${t.credentialName}-cacert`)) {
        warnings.push(`DestinationRule ${dr.name}: credential ${t.credentialName} is not in the secrets folder (${secretsDir}); Envoy waits for it over SDS`);
      }
    }
  }
  if (problems.length) {
    throw new MeshError(ErrorCodes.CONFIG, `${cfg.source}: credentials missing from the secrets folder:\n  - ${problems.join('\n  - ')}`, {
      subject: secretsDir,
      details: { problems },
    });
  }
  return out;
}

export function envoyConfigCommand(): Command {
  return new Command('envoy-config')
    .description('print an Envoy v3 bootstrap (YAML) for the Gateway resources of a gateway file, with certificates from meshcert\'s SDS')
    .requiredOption('-f, --file <gateway.yaml>', 'the gateway file (Gateway, VirtualService, DestinationRule, AuthorizationPolicy, GatewayOptions)')
    .requiredOption('--secrets <dir>', 'the secrets folder meshcert serve reads (sds.secrets): gives each credential\'s stapling policy')
    .option('--sds-address <addr>', 'where Envoy reaches meshcert\'s SDS: unix:PATH (default: unix:DATA-DIR/sds.sock, as meshcert serve) or HOST:PORT (gRPC with TLS)')
    .option('--sds-ca <file>', 'with HOST:PORT: CA certificate(s) that verify meshcert serve\'s SDS certificate (the mesh root-cert.pem, or sds.certFile\'s CA)')
    .option('--sds-cert <file>', 'with HOST:PORT: Envoy\'s client certificate chain, when sds.clientCaFile makes SDS mTLS')
    .option('--sds-key <file>', 'with --sds-cert: its private key (referenced by path; never copied into the output)')
    .option('--sds-server-name <name>', 'with HOST:PORT: SNI and DNS SAN expected of meshcert\'s SDS certificate (default: the host, when it is a name)')
    .option('--policy <name=policy>', 'stapling policy for a secret without the annotation (mounted folders), as serve\'s sds.ocspPolicies; repeatable', collectPolicy)
    .option('--workload-sds-address <unix:path>', 'ISTIO_MUTUAL servers and DestinationRules: where the workload identity (default) and trust bundle (ROOTCA) come from, e.g. meshcert agent\'s socket (default: --sds-address)')
    .option('--data-dir <dir>', `${DATA_DIR_HELP}; only for the default SDS socket`)
    .option('--node-id <id>', 'Envoy node id (default meshcert-gateway)')
    .option('--json', 'print the bootstrap as JSON instead of YAML')
    .addHelpText(
      'after',
      `
Listeners come from the Gateway servers (one per bind address and port; tls_inspector and one filter chain per server,
by SNI); HTTPS servers get an HTTP connection manager with routes from the VirtualServices bound to them,
AuthorizationPolicies as RBAC filters (DENY, then ALLOW), and XFCC for MUTUAL; PASSTHROUGH and TCP servers get
tcp_proxy by SNI. Certificates come over SDS: kubernetes://NAME for credentialName NAME, kubernetes://NAME-cacert for
the client CA of MUTUAL servers (default and ROOTCA for ISTIO_MUTUAL, e.g. from meshcert agent's socket), with
ocsp_staple_policy from the secret's kubernetes.io/ocsp-policy annotation: OPTIONAL -> LENIENT_STAPLING,
PREFERRED -> STRICT_STAPLING, MANDATORY -> MUST_STAPLE. Clusters come from the destinations and
GatewayOptions.upstreams, with DestinationRule TLS. The SDS cluster is HTTP/2.
Warnings (what Envoy cannot express, unservable secrets) go to stderr. Exit 1 when the gateway file is invalid or
a server's credential is missing from the secrets folder.

Example:
  meshcert envoy-config -f gateway.yaml --secrets ./secrets --sds-address unix:/run/meshcert/sds.sock > envoy.yaml
  envoy -c envoy.yaml`,
    )
    .action((opts: EnvoyConfigOptions) => {
      const sds = sdsEndpoint(opts);
      let workloadSds: SdsEndpoint | undefined;
      if (opts.workloadSdsAddress !== undefined) {
        const path = opts.workloadSdsAddress.startsWith('unix:') ? opts.workloadSdsAddress.slice('unix:'.length) : '';
        if (!path) throw usageError(`--workload-sds-address: "${opts.workloadSdsAddress}" is not unix:PATH (meshcert agent's SDS socket)`);
        workloadSds = { kind: 'uds', path: resolve(path) };
      }
      const cfg = loadGatewayFile(opts.file);
      if (!existsSync(opts.secrets)) {
        throw new MeshError(ErrorCodes.FILE_READ, `--secrets: ${opts.secrets} does not exist`, { subject: opts.secrets });
      }
      const warnings = [...cfg.warnings];
      const report = checkSecrets([opts.secrets], { policies: opts.policy ?? {} });
      for (const f of report.files) for (const p of f.problems) warnings.push(`${f.path}: ${p.message}`);
      const policies = staplePolicies(cfg, report, opts.secrets, warnings);
      const result = buildEnvoyBootstrap({
        config: cfg,
        staplePolicies: policies,
        sds,
        ...(workloadSds ? { workloadSds } : {}),
        ...(opts.nodeId ? { nodeId: opts.nodeId } : {}),
      });
      warnings.push(...result.warnings);
      for (const w of warnings) process.stderr.write(`meshcert: warning: ${w}\n`);
      if (opts.json) printJson(result.bootstrap);
      else printText(`# Envoy v3 bootstrap made by meshcert envoy-config from ${opts.file}\n${stringify(result.bootstrap, { lineWidth: 0 })}`);
    });
}
