import { join, resolve } from 'node:path';
import { CertificateIssuer, openTrustDomainCa, type CertificateAuthority, type CrlPublisher, type OcspResponder, type Revoker } from '../ca/index.js';
import type { ServeConfig } from '../config/index.js';
import { ErrorCodes, MeshError, type Clock, type Logger } from '../core/index.js';
import type { Ledger } from '../store/index.js';

/** Where a trust domain's CA folder is when the config names none. */
export const TRUST_DOMAINS_FOLDER = 'trust-domains';

/**
 * One trust domain the control plane signs for: its CA (in its own folder), the issuer that signs with it and, with
 * the HTTP listener on, its own OCSP responder (own delegated signer) and CRL. The main one is the data dir's CA.
 */
export interface SigningDomain {
  trustDomain: string;
  main: boolean;
  /** The CA's folder: the data dir for the main trust domain. */
  folder: string;
  /** `created` when start() made the CA now; else how the folder was found (see openTrustDomainCa). */
  source: 'created' | 'meshcert' | 'istio';
  ca: CertificateAuthority;
  issuer: CertificateIssuer;
  /** Where its CRL is served on the HTTP listener, and the distribution point its certificates carry. */
  crlPath: string;
  ocsp: OcspResponder | null;
  crl: CrlPublisher | null;
  /** Set once the revocation services exist. */
  revoker: Revoker | null;
}

/** The CRL path of a trust domain: the main one keeps /crl, every other one has /crl/<trust domain>. */
export function crlPathFor(trustDomain: string, main: boolean): string {
  return main ? '/crl' : `/crl/${trustDomain}`;
}

/** The folder of an additional trust domain's CA: caDir when given, else DATA-DIR/trust-domains/<name>. */
export function additionalCaDir(dataDir: string, entry: { name: string; caDir?: string | undefined }): string {
  return entry.caDir ?? join(dataDir, TRUST_DOMAINS_FOLDER, entry.name);
}

export interface OpenAdditionalOptions {
  config: Pick<ServeConfig, 'additionalTrustDomains' | 'issuance'>;
  dataDir: string;
  /** The URL the server answers at (see ControlPlane.publicUrl): AIA and CRL distribution points. */
  publicUrl: string | null;
  ledger: Ledger;
  clock: Clock;
  logger: Logger;
}

/**
 * The CAs of config.additionalTrustDomains, each made on first start when its folder holds none, else loaded as it
 * is; each writes the server's OCSP URL and its own CRL URL into what it issues. A folder that is the data dir, or
 * another trust domain's, is a CONFIG error naming the field.
 */
export async function openAdditionalDomains(options: OpenAdditionalOptions): Promise<SigningDomain[]> {
  const { config, dataDir, publicUrl, ledger, clock, logger } = options;
  const taken = new Map<string, string>([[resolve(dataDir), 'the data dir (the main trust domain\'s CA)']]);
  const out: SigningDomain[] = [];
  for (const [i, entry] of config.additionalTrustDomains.entries()) {
    const field = entry.caDir !== undefined ? `additionalTrustDomains[${i}].caDir` : `additionalTrustDomains[${i}].name`;
    const folder = additionalCaDir(dataDir, entry);
    const owner = taken.get(resolve(folder));
    if (owner) {
      throw new MeshError(ErrorCodes.CONFIG, `${field}: ${resolve(folder)} is ${owner}; each trust domain needs a CA folder of its own`, { subject: field });
    }
    taken.set(resolve(folder), `the CA folder of additionalTrustDomains[${i}] ("${entry.name}")`);
    const opened = await openTrustDomainCa(folder, entry.name, { field, clock, logger });
    const crlPath = crlPathFor(entry.name, false);
    const ca = opened.ca.withPublicUrl(publicUrl ?? undefined, crlPath);
    if (opened.source === 'created') {
      await ledger.audit({ type: 'ca-init', subject: ca.cert.subject, details: { mode: 'self-signed', serial: ca.cert.serial, trustDomain: entry.name, folder, by: 'serve' } });
    }
    const issuer = new CertificateIssuer(ca, ledger, {
      trustDomain: entry.name,
      defaultTtlMs: config.issuance.defaultTtl,
      maxTtlMs: config.issuance.maxTtl,
      backdateMs: config.issuance.backdate,
    });
    out.push({ trustDomain: entry.name, main: false, folder, source: opened.source, ca, issuer, crlPath, ocsp: null, crl: null, revoker: null });
  }
  return out;
}
