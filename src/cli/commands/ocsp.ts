import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { CertificateAuthority, makeOcspResponse } from '../../ca/index.js';
import { ErrorCodes, MeshError, describeError, parseDuration, writeFileAtomic } from '../../core/index.js';
import { Certificate, OcspResponse, opensslSerial, verifyOcspResponse } from '../../pki/index.js';
import { openLedger } from '../../store/index.js';
import { DATA_DIR_HELP, resolveDataDir } from '../data-dir.js';
import { printJson, printText, usageError } from '../output.js';

function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${path}: cannot read ${what}: ${describeError(err)}`, { subject: path, cause: err });
  }
}

export function ocspCommand(): Command {
  const ocsp = new Command('ocsp').description('make and check OCSP responses (staples)');
  ocsp
    .command('make')
    .description('sign an OCSP response (DER) for a certificate of this CA, with the status the ledger holds')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .requiredOption('--cert <file>', 'the certificate (the first of a chain file is used)')
    .requiredOption('--out <file>', 'where to write the DER response (a staple: tls.ocsp / tls.ocsp-staple)')
    .option('--valid <duration>', 'nextUpdate - thisUpdate', '4h')
    .addOption(new Option('--hash <alg>', 'CertID hash algorithm').choices(['sha1', 'sha256']).default('sha1'))
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nCheck it with: openssl ocsp -respin FILE -issuer ca-cert.pem -cert CERT -CAfile root-cert.pem -no_nonce')
    .action(async (opts: { dataDir?: string; cert: string; out: string; valid: string; hash: 'sha1' | 'sha256'; json?: boolean }) => {
      const validityMs = parseDuration(opts.valid, '--valid');
      const cert = Certificate.parse(readInput(opts.cert, 'certificate'), opts.cert);
      const dataDir = resolveDataDir(opts.dataDir);
      const ca = await CertificateAuthority.load(dataDir);
      const ledger = openLedger(dataDir);
      try {
        const made = await makeOcspResponse(ca, ledger, cert, { validityMs, hash: opts.hash });
        writeFileAtomic(opts.out, made.der);
        const status = typeof made.status === 'string' ? made.status : 'revoked';
        if (opts.json) return printJson({ file: opts.out, serial: opensslSerial(cert.serial), status, hash: opts.hash });
        printText(`Wrote OCSP response for ${opensslSerial(cert.serial)} to ${opts.out}: ${status}, valid ${opts.valid}`);
      } finally {
        await ledger.close();
      }
    });

  ocsp
    .command('check')
    .description('check a stapled OCSP response against its certificate and issuer (signature, CertID, status, freshness)')
    .argument('<staple>', 'DER OCSP response')
    .requiredOption('--cert <file>', 'the certificate the response is about')
    .requiredOption('--issuer <file>', 'the certificate of its issuer')
    .option('--at <time>', 'judge freshness at this time (ISO 8601) instead of now')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExit code 0 only for a valid staple saying good (the stapling rule of a gateway).')
    .action((staple: string, opts: { cert: string; issuer: string; at?: string; json?: boolean }) => {
      const at = opts.at ? new Date(opts.at) : new Date();
      if (Number.isNaN(at.getTime())) throw usageError(`--at: "${opts.at}" is not a time; use ISO 8601`);
      const cert = Certificate.parse(readInput(opts.cert, 'certificate'), opts.cert);
      const issuer = Certificate.parse(readInput(opts.issuer, 'issuer certificate'), opts.issuer);
      const resp = OcspResponse.parse(readInput(staple, 'OCSP response'), staple);
      const res = verifyOcspResponse(resp, { cert, issuer, at, maxClockSkewMs: 0 });
      const out = res.ok
        ? { ok: true, status: res.status, thisUpdate: res.thisUpdate, nextUpdate: res.nextUpdate, responder: res.responder.subject }
        : { ok: false, status: res.status ?? null, thisUpdate: res.thisUpdate ?? null, nextUpdate: res.nextUpdate ?? null, reasons: res.reasons };
      if (opts.json) printJson(out);
      else if (res.ok) printText(`${staple}: valid staple: ${res.status}, this update ${res.thisUpdate.toISOString()}, next update ${res.nextUpdate?.toISOString() ?? 'none'}`);
      else printText(`${staple}: not a valid staple${res.status ? ` (status ${res.status})` : ''}\n${res.reasons.map((r) => `  ${r.code}: ${r.message}`).join('\n')}`);
      if (!res.ok) process.exitCode = 1;
    });
  return ocsp;
}
