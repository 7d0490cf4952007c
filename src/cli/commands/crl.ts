import { Command } from 'commander';
import { CertificateAuthority, makeCrl } from '../../ca/index.js';
import { parseDuration, writeFileAtomic } from '../../core/index.js';
import { opensslSerial } from '../../pki/index.js';
import { openLedger } from '../../store/index.js';
import { DATA_DIR_HELP, resolveDataDir } from '../data-dir.js';
import { checkOutputFile } from '../out-paths.js';
import { printJson, printText } from '../output.js';

export function crlCommand(): Command {
  const crl = new Command('crl').description('make CRLs from the ledger');
  crl
    .command('make')
    .description('sign a v2 CRL of every unexpired certificate this CA has revoked (CRL number from the ledger)')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .requiredOption('--out <file>', 'where to write the CRL')
    .option('--next-update <duration>', 'how long the CRL is current (nextUpdate - thisUpdate)', '24h')
    .option('--der', 'write DER instead of PEM ("X509 CRL")')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nCheck it with: openssl crl -in FILE -CAfile ca-cert.pem -noout -text')
    .action(async (opts: { dataDir?: string; out: string; nextUpdate: string; der?: boolean; json?: boolean }) => {
      const validityMs = parseDuration(opts.nextUpdate, '--next-update');
      // Before the ledger spends a CRL number.
      checkOutputFile(opts.out, '--out');
      const dataDir = resolveDataDir(opts.dataDir);
      const ca = await CertificateAuthority.load(dataDir);
      const ledger = openLedger(dataDir);
      try {
        const made = await makeCrl(ca, ledger, { validityMs });
        writeFileAtomic(opts.out, opts.der ? made.der : made.crl.pem);
        const out = {
          file: opts.out,
          format: opts.der ? 'der' : 'pem',
          crlNumber: made.crlNumber,
          thisUpdate: made.crl.thisUpdate,
          nextUpdate: made.crl.nextUpdate,
          revoked: made.crl.entries.map((e) => ({ serial: opensslSerial(e.serial), revokedAt: e.revokedAt, reason: e.reason })),
        };
        if (opts.json) return printJson(out);
        printText(
          `Wrote CRL #${made.crlNumber} to ${opts.out}: ${out.revoked.length} revoked certificate(s), next update ${made.crl.nextUpdate?.toISOString()}`,
        );
      } finally {
        await ledger.close();
      }
    });
  return crl;
}
