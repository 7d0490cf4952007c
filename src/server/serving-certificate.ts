import { isIP } from 'node:net';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import type { CertificateIssuer } from '../ca/index.js';
import { describeError, silentLogger, type Logger } from '../core/index.js';
import { exportPrivateKeyPem, generateKeyPair, type Certificate } from '../pki/index.js';
import type { ServerMetrics } from './metrics.js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

export interface ServingCertificateOptions {
  issuer: CertificateIssuer;
  /** grpc.dnsNames; "localhost" adds the loopback IP SANs, so clients dialing 127.0.0.1 or ::1 verify too. */
  dnsNames: string[];
  ttlMs: number;
  logger?: Logger;
  metrics?: ServerMetrics;
  /** Fraction of the lifetime after which to renew (2/3, as smallstep does). */
  renewAt?: number;
  /** ± this fraction of the lifetime, so replicas started together do not renew together. */
  jitter?: number;
}

/** The names and addresses a serving certificate for `dnsNames` carries. */
export function servingNames(dnsNames: string[]): { dnsNames: string[]; ipAddresses: string[] } {
  const dns: string[] = [];
  const ips: string[] = [];
  for (const n of dnsNames) {
    if (isIP(n)) ips.push(n);
    else dns.push(n);
    if (n.toLowerCase() === 'localhost') ips.push('127.0.0.1', '::1');
  }
  return { dnsNames: [...new Set(dns)], ipAddresses: [...new Set(ips)] };
}

/**
 * The gRPC server's own TLS certificate, issued by the mesh CA (and recorded in its ledger like any other),
 * renewed at two thirds of its lifetime with jitter, and swapped into the live server without a restart.
 *
 * How the swap works: this class is a grpc-js `experimental.CertificateProvider`. The server credentials made by
 * `credentials()` (grpc-js 1.14 `experimental.createCertificateProviderServerCredentials`) subscribe to it; each
 * update becomes `setSecureContext()` on grpc-js's underlying http2 server, so new handshakes get the new
 * certificate while established connections carry on. The same provider supplies the CA bundle used to verify
 * client certificates, which are requested but optional (`rejectUnauthorized: false`); grpc-js reports a client
 * certificate to handlers only when it verified against that bundle.
 */
export class ServingCertificate implements experimental.CertificateProvider {
  readonly #issuer: CertificateIssuer;
  readonly #names: { dnsNames: string[]; ipAddresses: string[] };
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #metrics: ServerMetrics | undefined;
  readonly #renewAt: number;
  readonly #jitter: number;
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();
  #current: { cert: Certificate; chainPem: string; keyPem: string } | null = null;
  #caBundle: Buffer;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  #renewing: Promise<void> | null = null;

  constructor(options: ServingCertificateOptions) {
    this.#issuer = options.issuer;
    this.#names = servingNames(options.dnsNames);
    this.#ttlMs = options.ttlMs;
    this.#logger = options.logger ?? silentLogger;
    this.#metrics = options.metrics;
    this.#renewAt = options.renewAt ?? 2 / 3;
    this.#jitter = options.jitter ?? 0.05;
    const ca = this.#issuer.ca;
    // Intermediates as well as roots: a client that sends only its leaf still chains to a root.
    this.#caBundle = Buffer.from([...ca.intermediates, ...ca.roots].map((c) => c.pem).join('\n'));
  }

  /** The certificate now served (null before the first issuance). */
  get certificate(): Certificate | null {
    return this.#current?.cert ?? null;
  }

  get names(): { dnsNames: string[]; ipAddresses: string[] } {
    return this.#names;
  }

  /** Issues the first certificate and schedules its renewals. */
  async start(): Promise<void> {
    await this.renew();
  }

  /** Issues a fresh key and certificate now and pushes them to the server. Concurrent calls share one issuance. */
  renew(): Promise<void> {
    this.#renewing ??= this.#issueAndPublish().finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  async #issueAndPublish(): Promise<void> {
    // A new key each time: a serving key never outlives its certificate, and it never touches the disk.
    const keys = generateKeyPair('ec-p256');
    const issued = await this.#issuer.issue({
      publicKey: keys.publicKey,
      dnsNames: this.#names.dnsNames,
      ipAddresses: this.#names.ipAddresses,
      ttlMs: this.#ttlMs,
      profile: 'server',
    });
    if (this.#stopped) return;
    this.#current = { cert: issued.cert, chainPem: issued.chain.map((c) => c.pem).join('\n'), keyPem: exportPrivateKeyPem(keys.privateKey) };
    this.#metrics?.setServingNotAfter(issued.cert.notAfter);
    this.#logger.info(
      { serial: issued.cert.serial, notAfter: issued.cert.notAfter.toISOString(), dnsNames: this.#names.dnsNames, ipAddresses: this.#names.ipAddresses },
      'gRPC serving certificate issued',
    );
    const update = this.#identityUpdate();
    for (const l of this.#identityListeners) l(update);
    this.#schedule(issued.cert);
  }

  #schedule(cert: Certificate): void {
    if (this.#stopped) return;
    const now = this.#issuer.ca.clock.now().getTime();
    // The lifetime from now, not from the backdated notBefore: that is what remains to be used.
    const lifetime = Math.max(0, cert.notAfter.getTime() - now);
    const jitter = (Math.random() * 2 - 1) * this.#jitter * lifetime;
    this.#arm(lifetime * this.#renewAt + jitter, () => this.#renewOnTimer());
  }

  #arm(delayMs: number, fn: () => void): void {
    if (this.#timer) clearTimeout(this.#timer);
    // setTimeout fires at once for delays beyond 2^31-1 ms; re-arm in steps for very long lifetimes.
    const MAX = 2_147_000_000;
    const step = Math.max(0, Math.min(delayMs, MAX));
    this.#timer = setTimeout(() => (delayMs > MAX ? this.#arm(delayMs - MAX, fn) : fn()), step);
    this.#timer.unref();
  }

  #renewOnTimer(): void {
    this.renew().then(
      () => this.#metrics?.servingCertRenewals.inc({ result: 'ok' }),
      (err: unknown) => {
        this.#metrics?.servingCertRenewals.inc({ result: 'error' });
        // Keep serving the current certificate and retry sooner than its expiry, backing off to at most a minute.
        const left = this.#current ? this.#current.cert.notAfter.getTime() - this.#issuer.ca.clock.now().getTime() : 0;
        const retry = Math.min(60_000, Math.max(1_000, left / 10));
        this.#logger.error({ error: describeError(err), retryInMs: Math.round(retry) }, 'gRPC serving certificate renewal failed; keeping the current one');
        this.#arm(retry, () => this.#renewOnTimer());
      },
    );
  }

  /** Whether the server has a certificate it may present now, and if not, why. */
  health(): { ok: true } | { ok: false; reason: string } {
    const cur = this.#current;
    if (!cur) return { ok: false, reason: 'the gRPC serving certificate has not been issued' };
    const now = this.#issuer.ca.clock.now().getTime();
    if (cur.cert.notAfter.getTime() <= now) return { ok: false, reason: `the gRPC serving certificate expired at ${cur.cert.notAfter.toISOString()} and renewal has failed` };
    return { ok: true };
  }

  /** Server credentials that follow this provider: TLS with this certificate, client certificates optional. */
  credentials(): ServerCredentials {
    // grpc-js 1.14 declares the parameters as (caProvider, identityProvider, …) but passes them on to a
    // constructor taking (identityProvider, caProvider, …). This object is both, so the order cannot go wrong.
    return experimental.createCertificateProviderServerCredentials(this, this, false);
  }

  /** PEM of what client certificates are verified against by credentials(): the mesh CA's chain and roots. */
  get clientCaPem(): string {
    return this.#caBundle.toString();
  }

  /**
   * Server credentials presenting this certificate (renewed as it is) while verifying client certificates against
   * `clientCaPem` instead: the CA API trusting every trust domain's CA, an SDS listener trusting its own client CA.
   */
  credentialsWithClientCa(clientCaPem: string, requireClient: boolean): ServerCredentials {
    const caBundle = Buffer.from(clientCaPem);
    const caListeners = new Set<CaListener>();
    const provider: experimental.CertificateProvider = {
      addCaCertificateListener(listener) {
        caListeners.add(listener);
        process.nextTick(() => {
          if (caListeners.has(listener)) listener({ caCertificate: caBundle });
        });
      },
      removeCaCertificateListener(listener) {
        caListeners.delete(listener);
      },
      addIdentityCertificateListener: (listener) => this.addIdentityCertificateListener(listener),
      removeIdentityCertificateListener: (listener) => this.removeIdentityCertificateListener(listener),
    };
    // One object is both providers, so grpc-js's (caProvider, identityProvider) parameter order cannot go wrong.
    return experimental.createCertificateProviderServerCredentials(provider, provider, requireClient);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #identityUpdate(): experimental.IdentityCertificateUpdate | null {
    return this.#current ? { certificate: Buffer.from(this.#current.chainPem), privateKey: Buffer.from(this.#current.keyPem) } : null;
  }

  // CertificateProvider. Replays are deferred with nextTick, as grpc-js's own FileWatcherCertificateProvider does:
  // grpc-js subscribes before it registers the server's watcher, so a synchronous replay would go unseen.
  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    process.nextTick(() => {
      if (this.#caListeners.has(listener)) listener({ caCertificate: this.#caBundle });
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    process.nextTick(() => {
      const update = this.#identityUpdate();
      if (update && this.#identityListeners.has(listener)) listener(update);
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}
