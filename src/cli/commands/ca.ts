import { Command, Option } from 'commander';
import { CertificateAuthority, adoptPluginCa, initRootCa } from '../../ca/index.js';
import { openLedger } from '../../store/index.js';
import { KEY_TYPES, describeCertificate, formatInspection, parseKeyType } from '../../pki/index.js';
import { DATA_DIR_HELP, resolveDataDir } from '../data-dir.js';
import { printJson, printText } from '../output.js';

export function caCommand(): Command {
  const ca = new Command('ca').description('create and show the mesh CA');

  ca.command('init')
    .description(
      'create a mesh CA: a self-signed root, or (with --plugin DIR) an existing intermediate from an enterprise PKI, in the Istio file layout',
    )
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--trust-domain <name>', 'SPIFFE trust domain this CA signs for', 'cluster.local')
    .addOption(new Option('--key <type>', 'key type of a new root').choices([...KEY_TYPES]).default('ec-p256'))
    .option('--ttl <duration>', 'lifetime of a new root', '10y')
    .option('--org <name>', 'organization (O) of a new root (default: the trust domain)')
    .option('--plugin <dir>', 'adopt the CA in DIR: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem (Istio cacerts)')
    .option('--public-url <url>', 'base URL of the OCSP responder and CRL endpoint, written into issued certificates (AIA, CDP)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Files written to the data dir (Istio's names): ca-cert.pem, ca-key.pem (0600), root-cert.pem (trust bundle),
cert-chain.pem (the CA's chain up to the root), and meshcert's ca.json (trust domain, public URL).
An existing CA is never replaced.`,
    )
    .action(async (opts: { dataDir?: string; trustDomain: string; key: string; ttl: string; org?: string; plugin?: string; publicUrl?: string; json?: boolean }, cmd: Command) => {
      const dataDir = resolveDataDir(opts.dataDir);
      const trustDomainGiven = cmd.getOptionValueSource('trustDomain') === 'cli';
      const result = opts.plugin
        ? await adoptPluginCa(dataDir, opts.plugin, { trustDomain: trustDomainGiven ? opts.trustDomain : undefined, publicUrl: opts.publicUrl })
        : await initRootCa(dataDir, { trustDomain: opts.trustDomain, keyType: parseKeyType(opts.key), ttl: opts.ttl, org: opts.org, publicUrl: opts.publicUrl });
      const ledger = openLedger(dataDir);
      await ledger.audit({ type: 'ca-init', subject: result.cert.subject, details: { mode: result.mode, serial: result.cert.serial } });
      await ledger.close();
      if (opts.json) {
        printJson({ dataDir, mode: result.mode, files: result.files, certificate: describeCertificate(result.cert).fields });
        return;
      }
      printText(
        `${result.mode === 'plugin' ? 'Adopted plug-in CA' : 'Created self-signed root CA'} in ${dataDir}\n` +
          `  subject:   ${result.cert.subject}\n  expires:   ${result.cert.notAfter.toISOString()}\n` +
          `  files:     ${result.files.map((f) => f.replace(`${dataDir}/`, '')).join(', ')}\n` +
          `Next: meshcert cert issue --data-dir ${dataDir} --spiffe spiffe://<trust-domain>/ns/default/sa/default --out-dir ./workload`,
      );
    });

  ca.command('show')
    .description('show the CA of a data dir: certificate, chain, trust bundle and ledger counts')
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--json', 'print as JSON')
    .action(async (opts: { dataDir?: string; json?: boolean }) => {
      const dataDir = resolveDataDir(opts.dataDir);
      const authority = await CertificateAuthority.load(dataDir);
      const ledger = openLedger(dataDir, { readonly: false });
      const counts = await ledger.counts();
      await ledger.close();
      const info = {
        dataDir,
        trustDomain: authority.trustDomain,
        publicUrl: authority.settings.publicUrl ?? null,
        mode: authority.settings.mode,
        ca: describeCertificate(authority.cert).fields,
        chain: authority.chain.map((c) => c.subject),
        roots: authority.roots.map((r) => ({ subject: r.subject, notAfter: r.notAfter, sha256Fingerprint: r.fingerprint256 })),
        ledger: counts,
      };
      if (opts.json) return printJson(info);
      printText(
        `Mesh CA in ${dataDir} (trust domain ${info.trustDomain}, ${info.mode})\n` +
          `${formatInspection([describeCertificate(authority.cert)])}\n` +
          `Chain: ${info.chain.join(' <- ')}\nTrust bundle: ${info.roots.length} root(s)\n` +
          `Ledger: ${counts.total} issued, ${counts.valid} valid, ${counts.revoked} revoked`,
      );
    });
  return ca;
}
