import { accessSync, constants, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { requestCertificate } from '../../agent/index.js';
import { ErrorCodes, MeshError, describeError, parseDuration, writeFileAtomic } from '../../core/index.js';
import { writeKeyFile } from '../../keys/index.js';
import { Certificate, KEY_TYPES, buildCsr, generateKeyPair, keysMatch, opensslSerial, parseKeyType, parsePrivateKey, toSigningKey } from '../../pki/index.js';
import { printJson, printText, usageError } from '../output.js';

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${path}: cannot read ${what}: ${describeError(err)}`, { subject: path, cause: err });
  }
}

/** Token files are read as Kubernetes mounts them: surrounding whitespace (the trailing newline) is not the token. */
function readToken(path: string, option: string): string {
  const token = readText(path, 'token').trim();
  if (!token) throw usageError(`${option} ${path}: the file is empty`);
  return token;
}

interface RequestOpts {
  caAddress: string;
  caRoot: string;
  caServerName: string;
  tokenFile?: string;
  bootstrapTokenFile?: string;
  certChain?: string;
  key?: string;
  keyType: string;
  ttl: string;
  outDir: string;
  json?: boolean;
}

export function certRequestCommand(): Command {
  return new Command('request')
    .description('get a certificate from a running CA over the Istio CA API (gRPC), as istio-agent does: the key never leaves this machine')
    .requiredOption('--ca-address <host:port>', 'the CA gRPC API, e.g. 127.0.0.1:15012')
    .requiredOption('--ca-root <file>', 'trust bundle that verifies the CA (its root-cert.pem)')
    .option('--ca-server-name <name>', 'name to verify in the CA\'s serving certificate', 'istiod.istio-system.svc')
    .option('--token-file <file>', 'authenticate with this JWT (e.g. a Kubernetes service-account token)')
    .option('--bootstrap-token-file <file>', 'authenticate with this bootstrap token')
    .option('--cert-chain <file>', 'authenticate with this current certificate of the CA (with --key): renewal')
    .option('--key <file>', 'private key of --cert-chain')
    .addOption(new Option('--key-type <type>', 'type of the new key').choices([...KEY_TYPES]).default('ec-p256'))
    .option('--ttl <duration>', 'requested lifetime; the CA may shorten it', '24h')
    .requiredOption('--out-dir <dir>', 'where to write cert-chain.pem, key.pem (0600) and root-cert.pem')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Give exactly one credential: --token-file, --bootstrap-token-file, or --cert-chain with --key.
The identity (SPIFFE ID) is the one the CA grants to that credential; the CSR asks for nothing itself.
Writes Istio's workload files: cert-chain.pem (leaf and intermediates), key.pem (0600), root-cert.pem (the trust
bundle from the CA's answer). Nothing is written unless the CA issued a certificate for the new key.`,
    )
    .action(async (opts: RequestOpts) => {
      const creds = [opts.tokenFile, opts.bootstrapTokenFile, opts.certChain ?? opts.key].filter((x) => x !== undefined);
      if (creds.length !== 1) throw usageError('cert request: give exactly one credential: --token-file, --bootstrap-token-file, or --cert-chain with --key');
      if ((opts.certChain === undefined) !== (opts.key === undefined)) throw usageError('cert request: --cert-chain and --key go together');
      const ttlMs = parseDuration(opts.ttl, '--ttl');
      const rootCertPem = readText(opts.caRoot, 'CA trust bundle');
      Certificate.parseAll(rootCertPem, opts.caRoot);
      const bearerToken = opts.tokenFile ? readToken(opts.tokenFile, '--token-file') : opts.bootstrapTokenFile ? readToken(opts.bootstrapTokenFile, '--bootstrap-token-file') : undefined;
      const clientCert = opts.certChain && opts.key ? { certChainPem: readText(opts.certChain, 'certificate chain'), keyPem: readText(opts.key, 'private key') } : undefined;
      if (clientCert) {
        // TLS would only say "handshake failed": say which files do not belong together.
        const current = Certificate.parse(clientCert.certChainPem, opts.certChain);
        if (!keysMatch(parsePrivateKey(clientCert.keyPem, opts.key), current.publicKey)) {
          throw new MeshError(ErrorCodes.KEY_MISMATCH, `--key ${opts.key} is not the private key of --cert-chain ${opts.certChain}`, { subject: opts.key });
        }
      }
      const outDir = resolve(opts.outDir);
      // Before anything is asked of the CA: a certificate issued into a folder we cannot write is wasted.
      try {
        mkdirSync(outDir, { recursive: true });
        accessSync(outDir, constants.W_OK | constants.X_OK);
      } catch (err) {
        throw new MeshError(ErrorCodes.FILE_WRITE, `--out-dir ${outDir}: ${describeError(err)}`, { subject: outDir, cause: err });
      }

      const keys = generateKeyPair(parseKeyType(opts.keyType, '--key-type'));
      const csr = await buildCsr({}, await toSigningKey(keys.privateKey));
      const res = await requestCertificate({
        address: opts.caAddress,
        rootCertPem,
        serverName: opts.caServerName,
        csrPem: csr.pem,
        validitySeconds: Math.ceil(ttlMs / 1000),
        ...(bearerToken !== undefined ? { bearerToken } : {}),
        ...(clientCert ? { clientCert } : {}),
      });

      // The answer is checked before it replaces anything: leaf for our key, and a trust bundle as last element.
      if (res.certChain.length < 2) {
        throw new MeshError(ErrorCodes.CHAIN, `CA at ${opts.caAddress}: the answer has ${res.certChain.length} element(s); expected the leaf, any intermediates, then the trust bundle`);
      }
      const chain = res.certChain.slice(0, -1).flatMap((pem, i) => Certificate.parseAll(pem, `cert_chain[${i}]`));
      const bundlePem = res.certChain[res.certChain.length - 1]!;
      Certificate.parseAll(bundlePem, 'trust bundle (last cert_chain element)');
      const leaf = chain[0]!;
      if (!keysMatch(keys.privateKey, leaf.publicKey)) {
        throw new MeshError(ErrorCodes.KEY_MISMATCH, `CA at ${opts.caAddress}: the certificate it returned is not for the key of this request`);
      }
      const files = { certChain: join(outDir, 'cert-chain.pem'), key: join(outDir, 'key.pem'), rootCert: join(outDir, 'root-cert.pem') };
      writeKeyFile(files.key, keys.privateKey);
      writeFileAtomic(files.certChain, chain.map((c) => c.pem).join(''));
      writeFileAtomic(files.rootCert, bundlePem.endsWith('\n') ? bundlePem : `${bundlePem}\n`);

      const identity = leaf.spiffeIds[0] ?? leaf.subject;
      if (opts.json) {
        printJson({ identity, serial: opensslSerial(leaf.serial), notBefore: leaf.notBefore, notAfter: leaf.notAfter, files: Object.values(files) });
        return;
      }
      printText(
        `Received certificate ${opensslSerial(leaf.serial)} from ${opts.caAddress}\n` +
          `  identity:  ${identity}\n` +
          `  valid:     ${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()}\n` +
          `  files:     ${Object.values(files).join(', ')}`,
      );
    });
}
