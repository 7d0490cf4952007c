import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { CertificateAuthority, CertificateIssuer, initRootCa } from '../../ca/index.js';
import { writeFileAtomic } from '../../core/index.js';
import { writeKeyFile } from '../../keys/index.js';
import { Certificate, describeCertificate, formatInspection, generateKeyPair, validateChain } from '../../pki/index.js';
import { openLedger } from '../../store/index.js';
import { printJson, printText } from '../output.js';

export function demoCommand(): Command {
  return new Command('demo')
    .description('create a mesh CA in a temporary data dir, issue a workload SVID, verify it and print its inspection')
    .option('--keep', 'keep the temporary data dir and print where it is')
    .option('--json', 'print as JSON')
    .action(async (opts: { keep?: boolean; json?: boolean }) => {
      const dataDir = mkdtempSync(join(tmpdir(), 'meshcert-demo-'));
      try {
        const init = await initRootCa(dataDir, { trustDomain: 'cluster.local', publicUrl: 'http://127.0.0.1:15014' });
        const ca = await CertificateAuthority.load(dataDir);
        const ledger = openLedger(dataDir);
        const keys = generateKeyPair('ec-p256');
        const issued = await new CertificateIssuer(ca, ledger).issue({ publicKey: keys.publicKey, spiffeId: 'spiffe://cluster.local/ns/default/sa/demo' });
        await ledger.close();
        const out = join(dataDir, 'workload');
        writeFileAtomic(join(out, 'cert-chain.pem'), issued.chainPem);
        writeFileAtomic(join(out, 'root-cert.pem'), issued.trustBundlePem);
        writeKeyFile(join(out, 'key.pem'), keys.privateKey);
        // Read back what was written, as a workload would.
        const leaf = Certificate.parse(readFileSync(join(out, 'cert-chain.pem')), 'cert-chain.pem');
        const roots = Certificate.parseAll(readFileSync(join(out, 'root-cert.pem')), 'root-cert.pem');
        const check = validateChain({ leaf, roots, purpose: 'client' });
        if (opts.json) {
          printJson({ dataDir: opts.keep ? dataDir : null, ca: describeCertificate(init.cert).fields, workload: describeCertificate(leaf).fields, verified: check.ok });
        } else {
          printText(
            `Created a mesh CA (trust domain cluster.local) in ${dataDir}\n` +
              `Issued an X509-SVID for spiffe://cluster.local/ns/default/sa/demo into ${out}\n` +
              `Chain check against root-cert.pem: ${check.ok ? 'OK' : `FAILED: ${check.reasons.map((r) => r.message).join('; ')}`}\n\n` +
              formatInspection([describeCertificate(leaf)]) +
              (opts.keep ? `\n\nKept: ${dataDir}` : ''),
          );
        }
        if (!check.ok) process.exitCode = 1;
      } finally {
        if (!opts.keep) rmSync(dataDir, { recursive: true, force: true });
      }
    });
}
