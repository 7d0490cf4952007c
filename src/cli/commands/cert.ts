import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { adminListCertificates, adminRevoke } from '../../agent/index.js';
import { CertificateAuthority, CertificateIssuer, caExists, revokeCertificate } from '../../ca/index.js';
import { ErrorCodes, MeshError, describeError, parseDuration, writeFileAtomic } from '../../core/index.js';
import { writeKeyFile } from '../../keys/index.js';
import {
  Certificate,
  Csr,
  KEY_TYPES,
  REVOCATION_REASONS,
  describeCertificate,
  formatInspection,
  generateKeyPair,
  inspectData,
  opensslSerial,
  parseKeyType,
  parseRevocationReason,
  validateChain,
} from '../../pki/index.js';
import { openLedger } from '../../store/index.js';
import { DATA_DIR_HELP, resolveDataDir } from '../data-dir.js';
import { checkOutputDir } from '../out-paths.js';
import { printJson, printText, usageError } from '../output.js';
import { certRequestCommand } from './cert-request.js';

function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${path}: cannot read ${what}: ${describeError(err)}`, { subject: path, cause: err });
  }
}

const collect = (value: string, prev: string[] = []): string[] => [...prev, ...value.split(',').filter(Boolean)];

function parseTime(text: string, field: string): Date {
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw usageError(`${field}: "${text}" is not a time; use ISO 8601, e.g. 2026-01-31T12:00:00Z`);
  return d;
}

/** The admin token of `--server`: from a file, never the command line. */
function readAdminToken(tokenFile: string | undefined, command: string): string {
  if (!tokenFile) throw usageError(`${command} --server: give --token-file FILE (the server's admin token file)`);
  const token = readInput(tokenFile, 'admin token').toString('utf8').trim();
  if (!token) throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `${tokenFile}: the admin token file is empty`, { subject: tokenFile });
  return token;
}

/** `--trust-domain NAME`: which CA of a server with several trust domains; the server checks that it signs for it. */
function parseTrustDomain(value: string): string {
  const name = value.trim();
  if (!name || /[\s/]/.test(name)) throw usageError(`--trust-domain: "${value}" is not a trust domain name; e.g. --trust-domain partner.example`);
  return name;
}

const TRUST_DOMAIN_HELP = 'with --server: the trust domain whose CA to use, when the server signs for several (serve\'s additionalTrustDomains)';

/** `cert revoke --server`: the admin API of a running server. */
async function revokeOnline(
  serial: string,
  opts: { dataDir?: string; server: string; tokenFile?: string; trustDomain?: string; reason: string; invalidity?: Date; json?: boolean },
): Promise<void> {
  if (opts.dataDir) throw usageError('cert revoke: --data-dir and --server exclude each other (the server has its own data dir)');
  const token = readAdminToken(opts.tokenFile, 'cert revoke');
  const res = await adminRevoke({
    server: opts.server,
    token,
    serial,
    reason: opts.reason,
    ...(opts.invalidity ? { invalidityDate: opts.invalidity } : {}),
    ...(opts.trustDomain !== undefined ? { trustDomain: opts.trustDomain } : {}),
  });
  const out = {
    serial: res.serial,
    ...(res.trustDomain !== undefined ? { trustDomain: res.trustDomain } : {}),
    identity: res.identity,
    revokedAt: res.revokedAt,
    reason: res.reason,
    alreadyRevoked: res.alreadyRevoked,
    lagging: res.lagging,
  };
  if (opts.json) return printJson(out);
  const ca = res.trustDomain !== undefined ? ` by the CA of trust domain ${res.trustDomain}` : '';
  printText(
    (res.alreadyRevoked
      ? `${res.serial} was already revoked${ca} at ${res.revokedAt} (${res.reason})`
      : `Revoked ${res.serial} (${res.identity ?? res.subject})${ca} at ${res.revokedAt}, reason ${res.reason}, through ${opts.server}`) +
      (res.lagging.length ? `\nnote: the server has not yet refreshed ${res.lagging.join(' and ')}; it will shortly` : ''),
  );
}

/** `cert list --server`: the certificates of one trust domain's CA of a running server, through its admin API. */
async function listOnline(opts: {
  dataDir?: string; server: string; tokenFile?: string; trustDomain?: string; status?: 'valid' | 'revoked'; limit?: number; json?: boolean;
}): Promise<void> {
  if (opts.dataDir) throw usageError('cert list: --data-dir and --server exclude each other (the server has its own data dir)');
  const token = readAdminToken(opts.tokenFile, 'cert list');
  const rows = await adminListCertificates({
    server: opts.server,
    token,
    ...(opts.status ? { status: opts.status } : {}),
    ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
    ...(opts.trustDomain !== undefined ? { trustDomain: opts.trustDomain } : {}),
  });
  const out = rows.map((r) => ({
    serial: r.serial,
    ...(r.trustDomain !== undefined ? { trustDomain: r.trustDomain } : {}),
    identity: r.identity,
    profile: r.profile,
    status: r.status,
    notAfter: r.notAfter,
    revokedAt: r.revokedAt,
    reason: r.reason,
  }));
  if (opts.json) return printJson(out);
  if (out.length === 0) {
    return printText(`no certificates${opts.status ? ` ${opts.status}` : ''} of ${opts.trustDomain !== undefined ? `trust domain ${opts.trustDomain}` : 'the main trust domain'} at ${opts.server}`);
  }
  printText(out.map((r) => `${r.serial}  ${r.status.padEnd(7)}  ${r.notAfter}  ${r.profile.padEnd(6)}  ${r.identity ?? ''}`).join('\n'));
}

export function certCommand(): Command {
  const cert = new Command('cert').description('issue, inspect, verify, revoke and list certificates');

  cert
    .command('issue')
    .description('issue an X509-SVID (--spiffe) or a DNS/IP server certificate (--dns/--ip) from the CA of the data dir')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--spiffe <id>', 'SPIFFE ID, spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT')
    .option('--dns <name>', 'DNS name (repeat or comma-separate)', collect)
    .option('--ip <addr>', 'IP address (repeat or comma-separate)', collect)
    .addOption(new Option('--profile <profile>', 'certificate profile (default: svid with --spiffe, else server)').choices(['svid', 'server', 'client']))
    .option('--csr <file>', 'certify the key of this PKCS#10 CSR (PEM or DER) instead of making a key')
    .option('--ttl <duration>', 'lifetime, capped by the CA\'s own expiry', '24h')
    .addOption(new Option('--key <type>', 'type of the key to make (without --csr)').choices([...KEY_TYPES]).default('ec-p256'))
    .option('--must-staple', 'add the TLS feature (OCSP must-staple) extension, RFC 7633')
    .requiredOption('--out-dir <dir>', 'where to write cert-chain.pem, key.pem (0600) and root-cert.pem')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Writes Istio's workload files: cert-chain.pem (leaf and intermediates, no root), key.pem (0600, not with --csr),
root-cert.pem (the trust bundle). The certificate is in the ledger before any file is written.
Identities in a CSR are ignored: the command line says what is certified.`,
    )
    .action(async (opts: {
      dataDir?: string; spiffe?: string; dns?: string[]; ip?: string[]; profile?: 'svid' | 'server' | 'client'; csr?: string;
      ttl: string; key: string; mustStaple?: boolean; outDir: string; json?: boolean;
    }) => {
      if (!opts.spiffe && !opts.dns?.length && !opts.ip?.length) throw usageError('cert issue: give --spiffe ID, or --dns NAME / --ip ADDR');
      const ttlMs = parseDuration(opts.ttl, '--ttl');
      const dataDir = resolveDataDir(opts.dataDir);
      const outDir = resolve(opts.outDir);
      checkOutputDir(outDir, '--out-dir');
      const csr = opts.csr ? Csr.parseVerified(readInput(opts.csr, 'CSR'), opts.csr) : undefined;
      const keys = csr ? undefined : generateKeyPair(parseKeyType(opts.key));
      const ca = await CertificateAuthority.load(dataDir);
      const ledger = openLedger(dataDir);
      try {
        const issuer = new CertificateIssuer(ca, ledger);
        const issued = await issuer.issue({
          ...(csr ? { csr } : { publicKey: keys!.publicKey }),
          spiffeId: opts.spiffe,
          dnsNames: opts.dns,
          ipAddresses: opts.ip,
          ttlMs,
          profile: opts.profile,
          mustStaple: opts.mustStaple,
        });
        const files = [join(outDir, 'cert-chain.pem'), join(outDir, 'root-cert.pem')];
        if (keys) {
          writeKeyFile(join(outDir, 'key.pem'), keys.privateKey);
          files.splice(1, 0, join(outDir, 'key.pem'));
        }
        writeFileAtomic(join(outDir, 'cert-chain.pem'), issued.chainPem);
        writeFileAtomic(join(outDir, 'root-cert.pem'), issued.trustBundlePem);
        if (opts.json) {
          printJson({ serial: opensslSerial(issued.cert.serial), profile: issued.profile, files, note: issued.ttlNote, certificate: describeCertificate(issued.cert).fields });
          return;
        }
        printText(
          `Issued ${issued.profile} certificate ${opensslSerial(issued.cert.serial)}\n` +
            `  identity:  ${issued.entry.identity ?? issued.cert.subject}\n` +
            `  valid:     ${issued.cert.notBefore.toISOString()} to ${issued.cert.notAfter.toISOString()}\n` +
            (issued.ttlNote ? `  note:      ${issued.ttlNote}\n` : '') +
            `  files:     ${files.join(', ')}`,
        );
      } finally {
        await ledger.close();
      }
    });

  cert
    .command('inspect')
    .description('show a certificate, bundle, CSR, CRL, OCSP request or OCSP response (PEM or DER, recognised by content)')
    .argument('<file>', 'file to inspect ("-" for standard input)')
    .option('--json', 'print as JSON')
    .action((file: string, opts: { json?: boolean }) => {
      const data = file === '-' ? readFileSync(0) : readInput(file, 'input');
      const items = inspectData(data, file === '-' ? 'stdin' : file);
      if (opts.json) return printJson(items.length === 1 ? items[0] : items);
      printText(formatInspection(items));
    });

  cert
    .command('verify')
    .description('validate a certificate chain against a trust bundle (signatures, validity, CA flags, path length, usages, name constraints)')
    .argument('<file>', 'leaf certificate, optionally followed by its intermediates (PEM)')
    .requiredOption('--ca <bundle>', 'trusted roots (PEM bundle)')
    .option('--untrusted <file>', 'more intermediates (PEM bundle)')
    .addOption(new Option('--purpose <purpose>', 'check the extended key usage for this purpose').choices(['server', 'client', 'any']).default('any'))
    .option('--at <time>', 'validate at this time (ISO 8601) instead of now')
    .option('--hostname <name>', 'also check that the leaf is valid for this DNS name or IP')
    .option('--json', 'print the result as JSON')
    .action((file: string, opts: { ca: string; untrusted?: string; purpose: 'server' | 'client' | 'any'; at?: string; hostname?: string; json?: boolean }) => {
      const [leaf, ...rest] = Certificate.parseAll(readInput(file, 'certificate'), file);
      const roots = Certificate.parseAll(readInput(opts.ca, 'CA bundle'), opts.ca);
      const untrusted = opts.untrusted ? Certificate.parseAll(readInput(opts.untrusted, 'untrusted bundle'), opts.untrusted) : [];
      const at = opts.at ? parseTime(opts.at, '--at') : new Date();
      const res = validateChain({ leaf: leaf!, intermediates: [...rest, ...untrusted], roots, at, purpose: opts.purpose, hostname: opts.hostname });
      const chain = res.chain.map((c) => ({ subject: c.subject, serial: opensslSerial(c.serial), spiffeIds: c.spiffeIds }));
      if (opts.json) {
        printJson(res.ok ? { ok: true, chain } : { ok: false, chain, reasons: res.reasons });
      } else if (res.ok) {
        printText(`${file}: OK\n${chain.map((c, i) => `  ${i}: ${c.spiffeIds[0] ?? c.subject}`).join('\n')}`);
      } else {
        printText(`${file}: verification failed\n${res.reasons.map((r) => `  depth ${r.depth}: ${r.code}: ${r.message}`).join('\n')}`);
      }
      if (!res.ok) process.exitCode = 1;
    });

  cert
    .command('revoke')
    .description('revoke a certificate: in the ledger of the data dir, or through a running `meshcert serve` (--server)')
    .argument('<serial>', 'serial in hex, any case, colons optional (as `openssl x509 -serial` prints it)')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--server <url>', 'revoke through the admin API of a running server, e.g. http://127.0.0.1:15016')
    .option('--token-file <file>', 'with --server: the file holding the admin token (the server\'s admin.tokenFile, DATA-DIR/admin-token by default)')
    .option('--trust-domain <name>', TRUST_DOMAIN_HELP, parseTrustDomain)
    .addOption(new Option('--reason <reason>', 'RFC 5280 reason code').choices(REVOCATION_REASONS.filter((r) => r !== 'removeFromCRL')).default('unspecified'))
    .option('--invalidity-date <time>', 'when the key is known or suspected to have been compromised (ISO 8601)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Revoking twice is harmless. Without --server the ledger of the data dir is changed directly: a running server
answers OCSP and CRL requests from its caches and reflects it within half the OCSP response validity and at its
next CRL. With --server the server revokes, and its OCSP and CRL answers say so at once.
A server with several trust domains (additionalTrustDomains) revokes in the CA that issued the serial; when the CAs
of two trust domains issued it, it refuses until --trust-domain NAME says which (nothing is revoked meanwhile):
  meshcert cert revoke --server http://127.0.0.1:15016 --token-file .meshcert/admin-token SERIAL --trust-domain partner.example`,
    )
    .action(async (serial: string, opts: {
      dataDir?: string; server?: string; tokenFile?: string; trustDomain?: string; reason: string; invalidityDate?: string; json?: boolean;
    }) => {
      const reason = parseRevocationReason(opts.reason, '--reason');
      const invalidity = opts.invalidityDate ? parseTime(opts.invalidityDate, '--invalidity-date') : undefined;
      if (opts.server) return revokeOnline(serial, { ...opts, server: opts.server, reason, invalidity });
      if (opts.tokenFile) throw usageError('cert revoke: --token-file goes with --server');
      if (opts.trustDomain !== undefined) throw usageError('cert revoke: --trust-domain goes with --server (without it, the CA of the data dir revokes)');
      const dataDir = resolveDataDir(opts.dataDir);
      const ca = await CertificateAuthority.load(dataDir);
      const ledger = openLedger(dataDir);
      try {
        const { entry, alreadyRevoked } = await revokeCertificate(ca, ledger, serial, reason, invalidity);
        const out = { serial: opensslSerial(entry.serial), identity: entry.identity, revokedAt: entry.revokedAt, reason: entry.revocationReason, alreadyRevoked };
        if (opts.json) return printJson(out);
        printText(
          alreadyRevoked
            ? `${out.serial} was already revoked at ${entry.revokedAt?.toISOString()} (${entry.revocationReason})`
            : `Revoked ${out.serial} (${entry.identity ?? entry.subject}) at ${entry.revokedAt?.toISOString()}, reason ${entry.revocationReason}\n` +
                'Publish it: meshcert crl make --out crl.pem, or let `meshcert serve` answer OCSP and CRL requests.',
        );
      } finally {
        await ledger.close();
      }
    });

  cert
    .command('list')
    .description('list the certificates in the ledger, newest first: of the data dir, or of a running `meshcert serve` (--server)')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--server <url>', 'list through the admin API of a running server, e.g. http://127.0.0.1:15016')
    .option('--token-file <file>', 'with --server: the file holding the admin token (the server\'s admin.tokenFile, DATA-DIR/admin-token by default)')
    .option('--trust-domain <name>', `${TRUST_DOMAIN_HELP}; default: its main trust domain`, parseTrustDomain)
    .addOption(new Option('--status <status>', 'only valid or only revoked').choices(['valid', 'revoked']))
    .option('--limit <n>', 'at most this many (with --server: 100 unless given, at most 1000)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0) throw usageError(`--limit: "${v}" is not a positive integer`);
      return n;
    })
    .option('--json', 'print as JSON')
    .addHelpText(
      'after',
      `
With --server the list is of one CA of the server: its main trust domain's, or with --trust-domain NAME that of
another of its trust domains (serve's additionalTrustDomains); with --json each row then names its trust domain:
  meshcert cert list --server http://127.0.0.1:15016 --token-file .meshcert/admin-token --trust-domain partner.example`,
    )
    .action(async (opts: {
      dataDir?: string; server?: string; tokenFile?: string; trustDomain?: string; status?: 'valid' | 'revoked'; limit?: number; json?: boolean;
    }) => {
      if (opts.server) return listOnline({ ...opts, server: opts.server });
      if (opts.tokenFile) throw usageError('cert list: --token-file goes with --server');
      if (opts.trustDomain !== undefined) throw usageError('cert list: --trust-domain goes with --server (without it, the ledger of the data dir is listed)');
      const dataDir = resolveDataDir(opts.dataDir);
      // Never create a ledger in a folder that holds no CA (a mistyped --data-dir would list "nothing" and leave one behind).
      if (!caExists(dataDir)) {
        throw new MeshError(ErrorCodes.CA_NOT_FOUND, `${dataDir}: no CA here; create one with \`meshcert ca init --data-dir ${dataDir}\``, { subject: dataDir });
      }
      const ledger = openLedger(dataDir, { readonly: false });
      try {
        const rows = await ledger.list({ status: opts.status, limit: opts.limit });
        const now = Date.now();
        const out = rows.map((r) => ({
          serial: opensslSerial(r.serial),
          identity: r.identity,
          profile: r.profile,
          status: r.status === 'revoked' ? 'revoked' : r.notAfter.getTime() < now ? 'expired' : 'valid',
          notAfter: r.notAfter,
          revokedAt: r.revokedAt,
          reason: r.revocationReason,
        }));
        if (opts.json) return printJson(out);
        if (out.length === 0) return printText('no certificates in the ledger');
        printText(out.map((r) => `${r.serial}  ${r.status.padEnd(7)}  ${r.notAfter.toISOString()}  ${r.profile.padEnd(6)}  ${r.identity ?? ''}`).join('\n'));
      } finally {
        await ledger.close();
      }
    });
  cert.addCommand(certRequestCommand());
  return cert;
}
