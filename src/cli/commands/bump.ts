import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Command, Option } from 'commander';
import {
  BumpProxy,
  accessRule,
  headerFilter,
  initBumpCa,
  loadBumpCa,
  loadFilterModule,
  trustInstructions,
  type BumpFilter,
} from '../../bump/index.js';
import { defaultBumpConfig, loadBumpConfig, type BumpConfig } from '../../config/index.js';
import { ErrorCodes, MeshError, createLogger, describeError, parseDuration } from '../../core/index.js';
import { KEY_TYPES, parseKeyType } from '../../pki/index.js';
import { printJson, printText } from '../output.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

async function filtersFrom(config: BumpConfig, baseDir: string): Promise<BumpFilter[]> {
  const out: BumpFilter[] = [];
  for (const f of config.filters) {
    if (f.deny) out.push(accessRule('deny', f.deny, f.deny.reason, f.deny.status));
    else if (f.allow) out.push(accessRule('allow', f.allow));
    else if (f.addRequestHeader) out.push(headerFilter('request', 'add', f.addRequestHeader.name, f.addRequestHeader.value));
    else if (f.removeRequestHeader) out.push(headerFilter('request', 'remove', f.removeRequestHeader.name));
    else if (f.addResponseHeader) out.push(headerFilter('response', 'add', f.addResponseHeader.name, f.addResponseHeader.value));
    else if (f.removeResponseHeader) out.push(headerFilter('response', 'remove', f.removeResponseHeader.name));
    else if (f.module) out.push(await loadFilterModule(f.module.path, f.module.options, baseDir));
  }
  return out;
}

function readUpstreamCa(file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    const pem = readFileSync(file, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no CERTIFICATE block');
    return pem;
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `upstream.caFile ${file}: ${describeError(err)}`, { subject: 'upstream.caFile', cause: err });
  }
}

function bumpCaCommand(): Command {
  const ca = new Command('ca').description('manage the bumping CA (its own CA, never the mesh CA)');
  ca.command('init')
    .description('create the bumping CA: ca-cert.pem and ca-key.pem (0600) in --ca-dir, and print how clients trust it')
    .option('--ca-dir <dir>', 'folder of the bumping CA', './.meshcert/bump')
    .addOption(new Option('--key <type>', 'key type of the CA').choices([...KEY_TYPES]).default('ec-p256'))
    .option('--ttl <duration>', 'lifetime of the CA certificate', '10y')
    .option('--name <cn>', 'common name of the CA', 'meshcert bumping CA')
    .option('--force', 'replace an existing bumping CA (clients must then trust the new one)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { caDir: string; key: string; ttl: string; name: string; force?: boolean; json?: boolean }) => {
      const created = await initBumpCa(opts.caDir, {
        keyType: parseKeyType(opts.key),
        validityMs: parseDuration(opts.ttl, '--ttl'),
        commonName: opts.name,
        force: !!opts.force,
      });
      if (opts.json) {
        printJson({
          caDir: resolve(opts.caDir),
          certificate: resolve(opts.caDir, 'ca-cert.pem'),
          key: resolve(opts.caDir, 'ca-key.pem'),
          subject: created.cert.subject,
          notAfter: created.cert.notAfter,
          fingerprint256: created.cert.fingerprint256,
        });
      } else printText(`created the bumping CA in ${opts.caDir}\n${trustInstructions(created)}`);
    });
  return ca;
}

export function bumpCommand(): Command {
  return new Command('bump')
    .description('run the TLS-bumping egress proxy: mimic upstream certificates with a local CA, filter and audit decrypted HTTP')
    .option('--config <file>', 'YAML configuration (without it: explicit proxy on 127.0.0.1:3128, CA in ./.meshcert/bump, no filters)')
    .addOption(new Option('--log-level <level>', 'log level of the JSON log on stderr (default: $MESHCERT_LOG_LEVEL or info)').choices([...LOG_LEVELS]))
    .addHelpText(
      'after',
      `
Configuration (every key optional; relative paths are relative to the config file's folder):
  listen: 127.0.0.1:3128              explicit proxy: CONNECT host:port, and plain-HTTP forward proxying
  transparentListen: 127.0.0.1:3129   connections that start with a ClientHello; the SNI names the upstream
  caDir: ./.meshcert/bump             made by \`meshcert bump ca init --ca-dir DIR\`
  upstream:
    caFile: /etc/ssl/certs/ca-certificates.crt   trust for upstream servers (default: Node's bundled roots)
    resolve: { "upstream.test:443": "127.0.0.1:8443" }   fixed addresses instead of DNS
    onInvalidCertificate: mimic-error   or refuse (close the connection)
    connectTimeout: 10s
    transparentPort: 443              upstream port of transparent connections
    reuseVerifiedFor: 60s             new client connections to a host verified this recently use its pooled,
                                      verified upstream connections and cached mimic (0s: a handshake each)
  splice: ["*.bank.example"]          tunnelled raw, never bumped (exact names or *.domain)
  bump: []                            with defaultAction: splice, the only hosts bumped
  defaultAction: bump                 for hosts no pattern names
  filters:                            in order; the first deny not preceded by a matching allow answers 403
    - deny: { host: upstream.test, pathPrefix: /admin, method: [POST], reason: "…" }
    - allow: { host: "*.example.com" }
    - addRequestHeader: { name: x-bumped-by, value: meshcert }     (also removeRequestHeader,
    - module: { path: ./my-filter.js, options: {} }                 add/removeResponseHeader)
  auditLog: ./bump-audit.jsonl        JSON lines: time, client, SNI, method, URL, status, bytes, mimic serial
  mimic: { cacheSize: 10000, maxValidity: 7d, keyPoolSize: 8, prefillKeyTypes: [ec-p256, rsa-2048] }
  admin: { listen: 127.0.0.1:15090 }  /metrics and /healthz
  clientHelloTimeout: 10s
  idleTimeout: 120s

Server-first: the upstream is connected with the client's SNI and ALPN offers and verified before the mimic is
made; the client gets the protocol the upstream chose. An upstream certificate that does not verify (expired,
wrong host, untrusted, no SAN) is mimicked with an untrusted throwaway CA, so that the client sees the failure
(or, with onInvalidCertificate: refuse, the connection is closed). Stops cleanly on SIGINT or SIGTERM.`,
    )
    .addCommand(bumpCaCommand())
    .action(async (opts: { config?: string; logLevel?: string }) => {
      const config = opts.config ? loadBumpConfig(opts.config) : defaultBumpConfig();
      const baseDir = opts.config ? dirname(resolve(opts.config)) : process.cwd();
      const at = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
      const logger = createLogger({ level: opts.logLevel });
      const ca = await loadBumpCa(at(config.caDir), { warn: (m) => logger.warn(m) });
      const filters = await filtersFrom(config, baseDir);
      const proxy = await BumpProxy.start({
        listen: config.listen,
        ...(config.transparentListen ? { transparentListen: config.transparentListen } : {}),
        ...(config.admin ? { admin: config.admin.listen } : {}),
        ca,
        upstream: {
          caPem: readUpstreamCa(config.upstream.caFile && at(config.upstream.caFile)),
          resolve: config.upstream.resolve,
          onInvalidCertificate: config.upstream.onInvalidCertificate,
          connectTimeoutMs: config.upstream.connectTimeout,
          transparentPort: config.upstream.transparentPort,
          reuseVerifiedForMs: config.upstream.reuseVerifiedFor,
        },
        splice: { splice: config.splice, bump: config.bump, default: config.defaultAction },
        filters,
        ...(config.auditLog ? { auditLog: at(config.auditLog) } : {}),
        mimic: {
          cacheSize: config.mimic.cacheSize,
          maxValidityMs: config.mimic.maxValidity,
          keyPoolSize: config.mimic.keyPoolSize,
          prefillKeyTypes: config.mimic.prefillKeyTypes,
        },
        clientHelloTimeoutMs: config.clientHelloTimeout,
        idleTimeoutMs: config.idleTimeout,
        logger,
      });
      let stopSignal: (sig: NodeJS.Signals) => void = () => undefined;
      const stopped = new Promise<NodeJS.Signals>((r) => (stopSignal = r));
      process.once('SIGINT', stopSignal);
      process.once('SIGTERM', stopSignal);
      try {
        const lines = [`meshcert bump: bumping CA "${ca.cert.subject}" from ${ca.dir}`];
        lines.push(`  explicit proxy (CONNECT, http://): ${proxy.addresses.listen}`);
        if (proxy.addresses.transparent) lines.push(`  transparent TLS (SNI): ${proxy.addresses.transparent}`);
        if (proxy.addresses.admin) lines.push(`  health and metrics: http://${proxy.addresses.admin}/healthz  http://${proxy.addresses.admin}/metrics`);
        lines.push(`  filters: ${filters.length ? filters.map((f) => f.name).join('; ') : 'none'}`);
        if (config.auditLog) lines.push(`  audit log: ${at(config.auditLog)}`);
        printText(lines.join('\n'));
        const sig = await stopped;
        logger.info({ signal: sig }, 'stopping');
        printText(`meshcert bump: stopped (${sig})`);
      } finally {
        process.off('SIGINT', stopSignal);
        process.off('SIGTERM', stopSignal);
        await proxy.stop();
      }
    });
}
