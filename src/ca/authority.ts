import { ErrorCodes, MeshError, systemClock, type Clock, type Logger, silentLogger } from '../core/index.js';
import { readKeyFile } from '../keys/index.js';
import {
  Certificate,
  templateCertificateBuilder,
  issuerOf,
  keysMatch,
  toSigningKey,
  validateChain,
  type CertificateBuilder,
  type Issuer,
  type SigningKey,
} from '../pki/index.js';
import { caExists, caPaths, readSettings, readText, type CaSettings } from './ca-files.js';
import { caCertificateProblems } from './ca-profile.js';

export interface LoadOptions {
  clock?: Clock;
  builder?: CertificateBuilder;
  logger?: Logger;
  passphrase?: string;
  /**
   * The trust domain of a folder without ca.json (an Istio cacerts folder used as is); ca.json, when present, says
   * it instead. Default: Istio's "cluster.local".
   */
  trustDomain?: string;
}

/** Where the CRL of a CA is published below its public URL when nothing else is said. */
const DEFAULT_CRL_PATH = '/crl';

/**
 * The signing CA as loaded from a data dir: its certificate, key, chain to a root and the trust bundle. Loading
 * checks the same consistency as plug-in adoption, so a hand-edited folder fails at start, not at first issuance.
 */
export class CertificateAuthority {
  readonly issuer: Issuer;

  private constructor(
    readonly dataDir: string,
    readonly cert: Certificate,
    readonly signer: SigningKey,
    /** The CA certificate and the certificates above it, up to and including the root. */
    readonly chain: Certificate[],
    /** Every trusted root (two during a root rotation). */
    readonly roots: Certificate[],
    readonly settings: CaSettings,
    readonly builder: CertificateBuilder,
    readonly clock: Clock,
    /** The CRL's path below publicUrl: "/crl" for the main CA of `meshcert serve`, "/crl/<trust domain>" for others. */
    readonly crlPath: string = DEFAULT_CRL_PATH,
  ) {
    this.issuer = issuerOf(cert);
  }

  static async load(dataDir: string, options: LoadOptions = {}): Promise<CertificateAuthority> {
    if (!caExists(dataDir)) {
      throw new MeshError(ErrorCodes.CA_NOT_FOUND, `${dataDir}: no CA here; create one with \`meshcert ca init --data-dir ${dataDir}\``, {
        subject: dataDir,
      });
    }
    const p = caPaths(dataDir);
    const clock = options.clock ?? systemClock;
    const logger = options.logger ?? silentLogger;
    const cert = Certificate.parse(readText(p.caCert, 'CA certificate'), p.caCert);
    const roots = Certificate.parseAll(readText(p.rootCert, 'root bundle'), p.rootCert);
    const chainFile = Certificate.parseAll(readText(p.certChain, 'CA chain'), p.certChain);
    const { key, looseMode } = readKeyFile(p.caKey, options.passphrase);
    if (looseMode !== null) logger.warn({ file: p.caKey, mode: looseMode.toString(8) }, 'CA key file is readable by group or others; chmod 600 it');
    const problems = caCertificateProblems(cert, p.caCert);
    if (!keysMatch(key, cert.publicKey)) problems.push(`${p.caKey}: the private key does not match ${p.caCert}`);
    const intermediates = chainFile.filter((c) => !c.der.equals(cert.der));
    const res = validateChain({ leaf: cert, intermediates, roots, at: clock.now(), purpose: 'any' });
    if (!res.ok) problems.push(`${p.certChain}: does not chain ${p.caCert} to ${p.rootCert}: ${res.reasons.map((r) => r.message).join('; ')}`);
    if (problems.length) {
      throw new MeshError(ErrorCodes.CA_INVALID, `CA in ${dataDir} is not usable:\n  - ${problems.join('\n  - ')}`, { subject: dataDir, details: { problems } });
    }
    const signer = await toSigningKey(key);
    // The DER-template builder by default: byte-identical TBS to the generic one (a property test checks it), ~80x faster.
    const builder = options.builder ?? templateCertificateBuilder;
    const settings = readSettings(dataDir, options.trustDomain);
    return new CertificateAuthority(dataDir, cert, signer, res.ok ? res.chain : [cert], roots, settings, builder, clock);
  }

  get trustDomain(): string {
    return this.settings.trustDomain;
  }

  /** Certificates a leaf presents after itself: this CA and any intermediates above it, never a root of the bundle. */
  get intermediates(): Certificate[] {
    return this.chain.filter((c) => !this.roots.some((r) => r.der.equals(c.der)));
  }

  /** The trust bundle as concatenated PEM (root-cert.pem). */
  get trustBundlePem(): string {
    return this.roots.map((r) => r.pem).join('');
  }

  /** The latest instant a certificate from this CA may be valid: no later than any certificate of its chain. */
  get maxNotAfter(): Date {
    return new Date(Math.min(...this.chain.map((c) => c.notAfter.getTime())));
  }

  get crlUrl(): string | undefined {
    return this.settings.publicUrl ? `${this.settings.publicUrl}${this.crlPath}` : undefined;
  }

  get ocspUrl(): string | undefined {
    return this.settings.publicUrl ? `${this.settings.publicUrl}/ocsp` : undefined;
  }

  /**
   * The same CA writing another base URL into the AIA (OCSP) and CRL distribution point of what it issues from now
   * on: `meshcert serve` uses the http.publicUrl it actually answers at. ca.json is not changed. `crlPath` is where
   * this CA's CRL is served below that URL (each CA of a server has its own CRL, so all but one need another path).
   */
  withPublicUrl(publicUrl: string | undefined, crlPath: string = this.crlPath): CertificateAuthority {
    const url = publicUrl?.replace(/\/+$/, '');
    const { publicUrl: _old, ...rest } = this.settings;
    const settings: CaSettings = url ? { ...rest, publicUrl: url } : rest;
    return new CertificateAuthority(this.dataDir, this.cert, this.signer, this.chain, this.roots, settings, this.builder, this.clock, crlPath);
  }

  /** Swaps the certificate builder (the fast DER-template path) without touching callers or the ledger. */
  withBuilder(builder: CertificateBuilder): CertificateAuthority {
    return new CertificateAuthority(this.dataDir, this.cert, this.signer, this.chain, this.roots, this.settings, builder, this.clock, this.crlPath);
  }
}
