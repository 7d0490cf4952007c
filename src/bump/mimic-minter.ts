import type { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { systemClock, type Clock } from '../core/index.js';
import { OID, encodePem, randomSerial, templateCertificateBuilder, type CertificateSpec, type KeyType } from '../pki/index.js';
import type { BumpCa } from './bump-ca.js';
import { setContextCertificate, type BlankContext, type KeyPool, type PooledKey } from './key-pool.js';
import { LruCache } from './mimic-cache.js';
import { readUpstreamCertificate, type UpstreamCertificateInfo } from './upstream-certificate.js';

/** A minted mimic, ready to serve: the TLS context is made once and kept with it in the cache. */
export interface MimicCertificate {
  serial: string;
  der: Buffer;
  pem: string;
  context: SecureContext;
  notBefore: Date;
  notAfter: Date;
  keyType: KeyType;
  /** Signed by the bumping CA (the upstream verified) or by the untrusted throwaway CA (it did not). */
  signedBy: 'bump-ca' | 'untrusted-ca';
  /** Until when the cache may hand it out. */
  reuseUntil: number;
}

export interface MimicMinterOptions {
  ca: BumpCa;
  /** Signs mimics of upstream certificates that failed verification. */
  untrustedCa: BumpCa;
  keyPool: KeyPool;
  /** Mimic cache entries (default 10,000). */
  cacheSize?: number;
  /** Longest mimic validity, ms (default 7 days). */
  maxValidityMs?: number;
  clock?: Clock;
}

const DAY = 86_400_000;
/** A cached mimic is re-minted this long before it expires, so a client never receives one about to lapse. */
const REFRESH_MARGIN_MS = 60_000;
/** Mimics of invalid certificates are kept this long (they are cheap, and the upstream may get fixed). */
const UNTRUSTED_REUSE_MS = 3_600_000;

/**
 * Mints certificates that mimic an upstream's: same subject, same SAN list, same key algorithm and size class
 * (from a pool of pre-made keys), validity clamped to the bumping CA's and to `maxValidity`, never a CA, EKU
 * serverAuth only. Built by the DER-template builder and signed with the CA's cached KeyObject; cached (LRU) by the
 * upstream certificate's fingerprint, the SNI and whether it verified.
 */
export class MimicMinter {
  readonly cache: LruCache<MimicCertificate>;
  readonly maxValidityMs: number;
  readonly #ca: BumpCa;
  readonly #untrusted: BumpCa;
  readonly #pool: KeyPool;
  readonly #clock: Clock;
  /** Mints in flight per cache key: concurrent first connections to one host share one mint. */
  readonly #pending = new Map<string, Promise<MimicCertificate>>();

  constructor(options: MimicMinterOptions) {
    this.#ca = options.ca;
    this.#untrusted = options.untrustedCa;
    this.#pool = options.keyPool;
    this.#clock = options.clock ?? systemClock;
    this.maxValidityMs = options.maxValidityMs ?? 7 * DAY;
    this.cache = new LruCache(options.cacheSize ?? 10_000);
  }

  static cacheKey(fingerprint: string, sni: string, trusted: boolean): string {
    return `${trusted ? 'T' : 'U'}|${sni}|${fingerprint}`;
  }

  /** The cached mimic for this upstream certificate, SNI and verdict, if any (the cache-hit path). */
  lookup(fingerprint: string, sni: string, trusted: boolean): MimicCertificate | undefined {
    const now = this.#clock.now().getTime();
    return this.cache.get(MimicMinter.cacheKey(fingerprint, sni, trusted), (m) => m.reuseUntil > now);
  }

  /**
   * The mimic for `cert` (the upstream's leaf as the TLS stack parsed it): from the cache, or minted now. Resolves
   * synchronously in effect when the key pool has a key of the type (always, after start, for EC P-256 and RSA-2048).
   */
  async mimicFor(cert: X509Certificate, sni: string, trusted: boolean): Promise<{ mimic: MimicCertificate; cached: boolean; mintMs?: number }> {
    const fingerprint = cert.fingerprint256;
    const hit = this.lookup(fingerprint, sni, trusted);
    if (hit) return { mimic: hit, cached: true };
    const key = MimicMinter.cacheKey(fingerprint, sni, trusted);
    const pending = this.#pending.get(key);
    if (pending) return { mimic: await pending, cached: true };
    const started = performance.now();
    const info = readUpstreamCertificate(cert, `upstream certificate of ${sni}`);
    const blank = this.#pool.takeBlank(info.keyType);
    const promise = blank
      ? Promise.resolve().then(() => this.mintWithKey(info, trusted, blank.key, blank))
      : (async () => this.mintWithKey(info, trusted, this.#pool.takeNow(info.keyType) ?? (await this.#pool.take(info.keyType))))();
    this.#pending.set(key, promise);
    try {
      const mimic = await promise;
      this.cache.set(key, mimic);
      return { mimic, cached: false, mintMs: performance.now() - started };
    } finally {
      this.#pending.delete(key);
    }
  }

  /** The validity a mimic of `info` gets now. */
  validity(info: UpstreamCertificateInfo, trusted: boolean): { notBefore: Date; notAfter: Date } {
    const now = this.#clock.now().getTime();
    let notAfter = Math.min(info.notAfter.getTime(), now + this.maxValidityMs);
    let notBefore = info.notBefore.getTime();
    if (trusted) {
      notAfter = Math.min(notAfter, this.#ca.cert.notAfter.getTime());
      notBefore = Math.max(notBefore, this.#ca.cert.notBefore.getTime());
    }
    notBefore = Math.max(notBefore, notAfter - this.maxValidityMs);
    notBefore = Math.min(notBefore, notAfter);
    return { notBefore: new Date(notBefore), notAfter: new Date(notAfter) };
  }

  /** Mints synchronously with a key already taken from the pool (the part the mint-latency benchmark measures). */
  mintWithKey(info: UpstreamCertificateInfo, trusted: boolean, key: PooledKey, blank?: BlankContext): MimicCertificate {
    const ca = trusted ? this.#ca : this.#untrusted;
    const { notBefore, notAfter } = this.validity(info, trusted);
    const emptySubject = info.subject.length === 0;
    const spec: CertificateSpec = {
      serial: randomSerial(),
      subject: info.subject,
      notBefore,
      notAfter,
      publicKey: key.publicKey,
      basicConstraints: { ca: false },
      keyUsage: key.type.startsWith('rsa') ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'],
      extKeyUsage: ['serverAuth'],
      ...(info.sans.length ? { sans: info.sans, sanCritical: emptySubject } : {}),
      ...(info.rawSan ? { extraExtensions: [{ oid: OID.subjectAltName, critical: emptySubject, value: info.rawSan }] } : {}),
    };
    const der = templateCertificateBuilder.buildSync(spec, ca.issuer, ca.signer);
    const pem = encodePem('CERTIFICATE', der);
    const context = (blank && setContextCertificate(blank, pem)) ?? createSecureContext({ key: key.keyPem, cert: pem });
    const now = this.#clock.now().getTime();
    return {
      serial: spec.serial,
      der,
      pem,
      context,
      notBefore,
      notAfter,
      keyType: key.type,
      signedBy: trusted ? 'bump-ca' : 'untrusted-ca',
      reuseUntil: trusted ? notAfter.getTime() - REFRESH_MARGIN_MS : now + UNTRUSTED_REUSE_MS,
    };
  }
}
