import { EventEmitter } from 'node:events';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, MeshError, describeError, isMeshError, silentLogger, systemClock, type Clock, type Logger } from '../core/index.js';
import { Certificate, opensslSerial, parsePrivateKey } from '../pki/index.js';
import { SdsServer, StaticSecretProvider } from '../sds/index.js';
import { AgentAdminServer, type AgentHealth } from './agent-admin.js';
import { AgentMetrics, type RenewalResult } from './agent-metrics.js';
import { requestCertificate } from './ca-client.js';
import { IdentitySource, type AgentCredential, type CredentialMethod } from './identity-source.js';
import { checkIssuedChain, mergeBundles, parseCached, type IssuedCertificate } from './issued-certificate.js';
import { OutputFolder } from './output-folder.js';
import { RotateHook } from './rotate-hook.js';
import { RotationScheduler, type RotationPolicy } from './rotation-scheduler.js';
import { makeWorkloadKey, type AgentKeyType, type WorkloadKey } from './workload-key.js';

/** SDS resource names, as istio-agent serves them to its Envoy. */
export const SDS_DEFAULT = 'default';
export const SDS_ROOTCA = 'ROOTCA';

export const DEFAULT_CA_SERVER_NAME = 'istiod.istio-system.svc';

export interface AgentOptions {
  /** HOST:PORT of the CA's Istio CA API. */
  caAddress: string;
  /** The trust bundle that verifies the CA (its root-cert.pem); re-read when it changes, and served as trust. */
  caRootFile: string;
  /** The name checked in the CA's serving certificate. Default istiod.istio-system.svc. */
  caServerName?: string;
  tokenFile?: string;
  bootstrapTokenFile?: string;
  /** The exact SPIFFE ID this agent must get; certificates for another are rejected. */
  spiffeId?: string;
  /** Where cert-chain.pem, key.pem and root-cert.pem go (versioned folder and symlink swap). */
  outDir?: string;
  /** Unix socket for the local proxy's SDS (`default`, `ROOTCA`). */
  sdsUds?: string;
  /** Requested lifetime. Default 24 h. */
  certTtlMs?: number;
  /** Renewal fraction (default 0.66), jitter (0.1) and retry backoff (1 s doubling to 60 s). */
  rotation?: Partial<RotationPolicy>;
  keyType?: AgentKeyType;
  /** /healthz and /metrics. */
  adminListen?: { host: string; port: number };
  /** Shell command run after each rotation. */
  onRotate?: string;
  /** Deadline of one CA call. Default 10 s. */
  requestTimeoutMs?: number;
  /** How often --ca-root is checked for changes. Default 1 s; 0 turns the check off (a fleet simulated in one process). */
  caRootPollMs?: number;
  /** Sent as the request's metadata (Istio sends WorkloadName, ClusterID…). */
  metadata?: Record<string, unknown>;
  clock?: Clock;
  logger?: Logger;
  random?: () => number;
  /** Library use (benchmarks): run with no --out-dir and no --sds-uds. */
  allowNoOutput?: boolean;
  /** Process metrics (CPU, memory) on /metrics. Default true. */
  defaultMetrics?: boolean;
  /**
   * Simulations only (a fleet of agents in one process, bench/rotation.ts): waited for before each attempt, and
   * released after it, to bound the attempts that run at once. Real agents each have their own CPU; a thousand of
   * them sharing one would all time out together. The time spent waiting is not part of an attempt's `ms`.
   */
  attemptGate?: () => Promise<() => void>;
}

/** A certificate the agent installed (files first, then SDS). */
export interface CertificateEvent {
  spiffeId: string;
  serial: string;
  notAfter: Date;
  receivedAt: Date;
  renewalAt: Date;
  method: CredentialMethod | 'out-dir';
  /** The version folder written in --out-dir, when there is one. */
  version: string | null;
  /** Milliseconds the attempt took (key, CSR, CA call, checks, files, SDS). */
  ms: number;
}

export interface FailureEvent {
  error: MeshError;
  result: RenewalResult;
  failures: number;
  retryAt: Date;
  /** notAfter of the certificate still served, or null when none is. */
  servingUntil: Date | null;
}

interface Held {
  issued: IssuedCertificate;
  key: WorkloadKey | { keyPem: string };
  receivedAt: Date;
  /** The credential it was obtained with (its id), and the SA path of a token. */
  credentialId: string;
  pathSuffix: string | null;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

function asMeshError(err: unknown, fallback: (typeof ErrorCodes)[keyof typeof ErrorCodes]): MeshError {
  return isMeshError(err) ? err : new MeshError(fallback, describeError(err), { cause: err });
}

function seconds(ms: number): string {
  return ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * The workload agent (`meshcert agent`): makes a key in memory, gets a SPIFFE certificate for it from the CA over
 * the Istio CA API, checks the answer, writes the files (versioned folder, one symlink swap) and only then pushes
 * the same version to the local proxy over SDS, renews at a fraction of the lifetime with jitter, retries with
 * capped exponential backoff, keeps serving until expiry and then stops serving the certificate and says so.
 *
 * Events: 'certificate' (CertificateEvent), 'failure' (FailureEvent), 'expired' ({ notAfter }),
 * 'trust-bundle' ({ roots, source }).
 */
export class Agent extends EventEmitter {
  readonly options: AgentOptions;
  readonly metrics: AgentMetrics;
  readonly provider = new StaticSecretProvider();
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #identity: IdentitySource;
  readonly #scheduler: RotationScheduler;
  readonly #output: OutputFolder | null;
  readonly #hook: RotateHook | null;
  #sds: SdsServer | null = null;
  #admin: AgentAdminServer | null = null;
  #anchors: Certificate[] = [];
  #caRootPem = '';
  /** The bundle the CA returned last. */
  #caBundle: Certificate[] = [];
  /** The bundle served (ROOTCA, root-cert.pem): the CA's ∪ --ca-root. */
  #served: Certificate[] = [];
  #held: Held | null = null;
  #expired = false;
  #avoidCertificate = false;
  #lastError: MeshError | null = null;
  #timer: NodeJS.Timeout | null = null;
  #inflight: Promise<void> | null = null;
  #started = false;
  #stopped = false;
  #firstCertificate: Promise<CertificateEvent>;
  #resolveFirst!: (e: CertificateEvent) => void;

  constructor(options: AgentOptions) {
    super();
    this.options = options;
    if (!options.caAddress) throw new MeshError(ErrorCodes.USAGE, '--ca-address is required (HOST:PORT of the CA)', { subject: '--ca-address' });
    if (!options.caRootFile) throw new MeshError(ErrorCodes.USAGE, '--ca-root is required (the CA\'s root-cert.pem)', { subject: '--ca-root' });
    if (!options.outDir && !options.sdsUds && !options.allowNoOutput) {
      throw new MeshError(ErrorCodes.USAGE, 'give --out-dir and/or --sds-uds: the certificate has to go somewhere', { subject: '--out-dir' });
    }
    if (options.certTtlMs !== undefined && !(options.certTtlMs >= 1000)) {
      throw new MeshError(ErrorCodes.INVALID_ARGUMENT, '--cert-ttl: at least 1s', { subject: '--cert-ttl' });
    }
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#identity = new IdentitySource({ tokenFile: options.tokenFile, bootstrapTokenFile: options.bootstrapTokenFile });
    this.#scheduler = new RotationScheduler({ policy: options.rotation ?? {}, clock: this.#clock, ...(options.random ? { random: options.random } : {}) });
    this.#output = options.outDir ? new OutputFolder(options.outDir) : null;
    this.metrics = new AgentMetrics({ defaultMetrics: options.defaultMetrics ?? true });
    this.#hook = options.onRotate ? new RotateHook(options.onRotate, this.#logger, (ok) => this.metrics.onRotateRuns.inc({ result: ok ? 'ok' : 'failed' })) : null;
    this.#firstCertificate = new Promise((resolve) => (this.#resolveFirst = resolve));
    // No listener must not mean a crash: failures are in the log and the metrics.
    this.on('error', () => undefined);
  }

  /** Where the SDS socket and the admin endpoint listen, once started. */
  get addresses(): { sdsUds: string | null; admin: string | null } {
    return { sdsUds: this.#sds?.addresses.uds ?? null, admin: this.#admin?.address ?? null };
  }

  /** The certificate served now (null before the first, and after expiry). */
  get current(): IssuedCertificate | null {
    return this.#held && !this.#expired ? this.#held.issued : null;
  }

  get trustBundle(): Certificate[] {
    return [...this.#served];
  }

  get lastError(): MeshError | null {
    return this.#lastError;
  }

  /** Resolves with the first certificate installed (from the CA, or adopted from --out-dir). */
  firstCertificate(): Promise<CertificateEvent> {
    return this.#firstCertificate;
  }

  health(): AgentHealth {
    const held = this.#held;
    const now = this.#clock.now();
    if (held && !this.#expired && now.getTime() < held.issued.leaf.notAfter.getTime()) {
      const left = held.issued.leaf.notAfter.getTime() - now.getTime();
      return {
        ready: true,
        message: `ready: serving ${held.issued.spiffeId}, serial ${opensslSerial(held.issued.leaf.serial)}, valid until ${held.issued.leaf.notAfter.toISOString()} (${seconds(left)} left)`,
      };
    }
    const why = this.#lastError ? `; last error: ${this.#lastError.message}` : '';
    if (held) return { ready: false, message: `not ready: the certificate for ${held.issued.spiffeId} expired at ${held.issued.leaf.notAfter.toISOString()} and is no longer served${why}` };
    return { ready: false, message: `not ready: no certificate yet${why}` };
  }

  /**
   * Checks the inputs (clear errors for a missing token, an unreadable --ca-root, an unwritable --out-dir), starts
   * SDS and the admin endpoint, adopts a still-valid certificate from --out-dir, and starts getting a certificate.
   * Resolves once everything listens; the certificate follows (see firstCertificate()).
   */
  async start(): Promise<this> {
    if (this.#started) return this;
    this.#started = true;
    const o = this.options;
    this.#loadCaRoot(true);
    this.#output?.prepare();
    const adopted = this.#adopt();
    try {
      this.#identity.check();
    } catch (err) {
      // A consumed one-time bootstrap token may be gone once a certificate is held: renewal needs no token.
      if (!adopted || o.tokenFile) throw err;
      this.#logger.warn({ err: describeError(err) }, 'the bootstrap token cannot be read; renewing with the current certificate');
    }
    if (!adopted && !this.#identity.hasToken) {
      throw new MeshError(
        ErrorCodes.USAGE,
        `no credential: give --token-file or --bootstrap-token-file${this.#output ? ` (${this.#output.dir} holds no current certificate to renew)` : ''}`,
        { subject: '--token-file' },
      );
    }
    this.#setRootCa('--ca-root');
    try {
      if (o.sdsUds) this.#sds = await SdsServer.start({ uds: o.sdsUds, provider: this.provider, logger: this.#logger, controlPlaneId: 'meshcert-agent' });
      if (o.adminListen) {
        this.#admin = new AgentAdminServer(() => this.health(), this.metrics, this.#logger);
        await this.#admin.listen(o.adminListen.host, o.adminListen.port);
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    if (o.caRootPollMs !== 0) watchFile(o.caRootFile, { interval: o.caRootPollMs ?? 1000, persistent: false }, this.#onCaRootChange);
    this.#arm();
    return this;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    unwatchFile(this.options.caRootFile, this.#onCaRootChange);
    // An attempt in flight ends on its own (its answer is then ignored); wait for it a little, not for its deadline.
    if (this.#inflight) await Promise.race([this.#inflight.catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    await Promise.all([this.#sds?.close(500), this.#admin?.close()]);
    this.#logger.info('agent stopped');
  }

  /** Asks for a new certificate now (e.g. on SIGHUP), whatever the schedule says. */
  renewNow(): void {
    if (this.#stopped) return;
    this.#scheduler.renewNow();
    this.#arm();
  }

  // --- the loop --------------------------------------------------------------------------------------------------

  #arm(): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const step = this.#scheduler.next();
    // During an attempt only the expiry is watched (a slow CA call must not keep an expired certificate in
    // service); the attempt re-arms when it ends.
    if (this.#inflight && step.action !== 'expire') return;
    this.metrics.nextRenewal.set(this.#scheduler.renewalAt.getTime() / 1000);
    this.#timer = setTimeout(() => this.#wake(), Math.min(this.#scheduler.delayUntil(step), MAX_TIMER_MS));
  }

  #wake(): void {
    this.#timer = null;
    if (this.#stopped) return;
    const step = this.#scheduler.next();
    if (this.#scheduler.delayUntil(step) > 0) return this.#arm();
    if (step.action === 'expire') {
      this.#expire();
      return this.#arm();
    }
    if (this.#inflight) return;
    const gate = this.options.attemptGate;
    const run = gate ? gate().then((release) => this.#attempt().finally(release)) : this.#attempt();
    this.#inflight = run.finally(() => {
      this.#inflight = null;
      this.#arm();
    });
  }

  async #attempt(): Promise<void> {
    if (this.#stopped) return;
    const t0 = performance.now();
    const o = this.options;
    const source = `CA at ${o.caAddress}`;
    const held = this.#held;
    let cred: AgentCredential;
    try {
      cred = this.#identity.credentialFor(
        held && !this.#expired ? { certChainPem: held.issued.chainPem, keyPem: held.key.keyPem, notAfter: held.issued.leaf.notAfter } : null,
        this.#clock.now(),
        this.#avoidCertificate,
      );
    } catch (err) {
      return this.#failed('credential_error', asMeshError(err, ErrorCodes.UNAUTHENTICATED), t0);
    }
    if (cred.tokenChanged) this.#logger.info({ credential: cred.describe }, 'the token file changed: the new token is used from now on');
    let key: WorkloadKey;
    let certChain: string[];
    try {
      key = await makeWorkloadKey(o.keyType ?? 'ec-p256');
      const res = await requestCertificate({
        address: o.caAddress,
        rootCertPem: this.#caRootPem,
        serverName: o.caServerName ?? DEFAULT_CA_SERVER_NAME,
        csrPem: key.csrPem,
        validitySeconds: Math.ceil((o.certTtlMs ?? 24 * 3_600_000) / 1000),
        timeoutMs: o.requestTimeoutMs ?? 10_000,
        ...(cred.bearerToken !== undefined ? { bearerToken: cred.bearerToken } : {}),
        ...(cred.clientCert ? { clientCert: cred.clientCert } : {}),
        ...(o.metadata ? { metadata: o.metadata } : {}),
      });
      certChain = res.certChain;
    } catch (err) {
      const e = asMeshError(err, ErrorCodes.UNAVAILABLE);
      if (cred.method === 'certificate' && (e.code === ErrorCodes.UNAUTHENTICATED || e.code === ErrorCodes.PERMISSION_DENIED)) this.#avoidCertificate = true;
      return this.#failed('ca_error', e, t0, cred);
    }
    if (this.#stopped) return;
    const receivedAt = this.#clock.now();
    let issued: IssuedCertificate;
    try {
      issued = checkIssuedChain({
        certChain,
        privateKey: key.privateKey,
        anchors: mergeBundles(this.#anchors, this.#served),
        expectedId: this.#expectedId(cred),
        expectedPathSuffix: cred.expectedPathSuffix,
        source,
        at: receivedAt,
      });
    } catch (err) {
      return this.#failed('rejected', asMeshError(err, ErrorCodes.CHAIN), t0, cred);
    }
    try {
      this.#install({ issued, key, receivedAt, credentialId: cred.credentialId, pathSuffix: cred.expectedPathSuffix }, cred.method, t0, true);
    } catch (err) {
      return this.#failed('output_error', asMeshError(err, ErrorCodes.FILE_WRITE), t0, cred);
    }
    this.#avoidCertificate = false;
  }

  /** The SPIFFE ID the answer must carry: --spiffe-id, else the one held, unless the credential changed since. */
  #expectedId(cred: AgentCredential): string | null {
    if (this.options.spiffeId) return this.options.spiffeId;
    const held = this.#held;
    if (!held) return null;
    if (cred.method === 'certificate' || cred.credentialId === held.credentialId) return held.issued.spiffeId;
    // Another token: the same service account keeps its identity (a projected token Kubernetes rotated)…
    if (cred.method === 'token' && cred.expectedPathSuffix !== null && cred.expectedPathSuffix === held.pathSuffix) return held.issued.spiffeId;
    // …a token for another one may change it (the suffix check still applies).
    return null;
  }

  /** Files first (one symlink swap), then SDS (ROOTCA, then default), then the schedule, the hook and the events. */
  #install(held: Held, method: CertificateEvent['method'], t0: number, fromCa: boolean): void {
    const writeFiles = fromCa;
    const { issued, receivedAt } = held;
    const bundle = mergeBundles(issued.bundle, this.#anchors);
    const bundlePem = bundle.map((c) => c.pem).join('');
    let version: string | null = null;
    if (this.#output && writeFiles) {
      version = this.#output.write({ certChainPem: issued.chainPem, keyPem: held.key.keyPem, rootCertPem: bundlePem }, receivedAt);
    }
    const bundleChanged = !sameCertificates(bundle, this.#served);
    const previous = this.#held;
    this.#caBundle = issued.bundle;
    this.#served = bundle;
    this.#held = held;
    this.#expired = false;
    if (bundleChanged) this.#setRootCa('the CA');
    this.provider.set(SDS_DEFAULT, { kind: 'tlsCertificate', certificateChain: issued.chainPem, privateKey: held.key.keyPem });
    const renewalAt = this.#scheduler.issued(issued.leaf.notAfter);
    const ms = Math.round(performance.now() - t0);
    if (fromCa) {
      this.metrics.renewals.inc({ result: 'success' });
      this.metrics.renewalSeconds.observe({ result: 'success' }, ms / 1000);
    }
    this.metrics.expiry.set(issued.leaf.notAfter.getTime() / 1000);
    this.metrics.valid.set(1);
    this.metrics.consecutiveFailures.set(0);
    const serial = opensslSerial(issued.leaf.serial);
    const life = issued.leaf.notAfter.getTime() - receivedAt.getTime();
    this.#logger.info(
      { spiffeId: issued.spiffeId, serial, notAfter: issued.leaf.notAfter.toISOString(), renewalAt: renewalAt.toISOString(), method, version, ms },
      `${!fromCa ? 'reusing the' : previous ? 'rotated: new' : 'got a'} certificate for ${issued.spiffeId} (serial ${serial}), valid for ${seconds(life)} until ${issued.leaf.notAfter.toISOString()}; ` +
        `${this.#output && writeFiles ? `files written to ${this.#output.dir}, ` : ''}${this.#sds ? 'pushed over SDS, ' : ''}next renewal at ${renewalAt.toISOString()} (in ${seconds(renewalAt.getTime() - receivedAt.getTime())})`,
    );
    const event: CertificateEvent = { spiffeId: issued.spiffeId, serial, notAfter: issued.leaf.notAfter, receivedAt, renewalAt, method, version, ms };
    if (fromCa) this.#hook?.trigger({ reason: 'certificate', spiffeId: issued.spiffeId, serial, notAfter: issued.leaf.notAfter, outDir: this.#output?.dir ?? null, sdsUds: this.#sds?.addresses.uds ?? null });
    this.#lastError = null;
    this.emit('certificate', event);
    this.#resolveFirst(event);
  }

  #failed(result: RenewalResult, error: MeshError, t0: number, cred?: AgentCredential): void {
    this.#lastError = error;
    const retryAt = this.#scheduler.failed();
    const now = this.#clock.now();
    this.metrics.renewals.inc({ result });
    this.metrics.renewalSeconds.observe({ result }, (performance.now() - t0) / 1000);
    this.metrics.recordError(error.code, now, this.#scheduler.failures);
    const held = this.#held;
    const servingUntil = held && !this.#expired ? held.issued.leaf.notAfter : null;
    const keeping = servingUntil
      ? `still serving the current certificate (valid until ${servingUntil.toISOString()}, ${seconds(servingUntil.getTime() - now.getTime())} left)`
      : held
        ? 'no valid certificate is served'
        : 'no certificate yet';
    const what = result === 'rejected' ? 'the CA\'s answer was rejected' : result === 'output_error' ? 'the files could not be written' : 'could not get a certificate';
    this.#logger[servingUntil ? 'warn' : 'error'](
      { result, code: error.code, failures: this.#scheduler.failures, retryAt: retryAt.toISOString(), credential: cred?.describe },
      `${what}: ${error.message}; ${keeping}; attempt ${this.#scheduler.failures} failed, next in ${seconds(retryAt.getTime() - now.getTime())}`,
    );
    this.emit('failure', { error, result, failures: this.#scheduler.failures, retryAt, servingUntil } satisfies FailureEvent);
  }

  #expire(): void {
    this.#scheduler.expiredHandled();
    const held = this.#held;
    if (!held || this.#expired) return;
    this.#expired = true;
    const notAfter = held.issued.leaf.notAfter;
    this.provider.withhold(SDS_DEFAULT, `the certificate for ${held.issued.spiffeId} expired at ${notAfter.toISOString()}`);
    this.metrics.valid.set(0);
    this.metrics.expirations.inc();
    this.#logger.error(
      { spiffeId: held.issued.spiffeId, notAfter: notAfter.toISOString(), lastError: this.#lastError?.message },
      `CERTIFICATE EXPIRED: the certificate for ${held.issued.spiffeId} expired at ${notAfter.toISOString()} and no new one could be obtained` +
        `${this.#lastError ? ` (last error: ${this.#lastError.message})` : ''}; it is no longer served over SDS and /healthz reports not ready; still trying`,
    );
    this.emit('expired', { notAfter, spiffeId: held.issued.spiffeId });
  }

  // --- trust ---------------------------------------------------------------------------------------------------

  /** Reads --ca-root; at start a bad file is an error, later it is logged and the last good one kept. */
  #loadCaRoot(atStart: boolean): boolean {
    const file = this.options.caRootFile;
    let text: string;
    let roots: Certificate[];
    try {
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new MeshError(ErrorCodes.FILE_READ, `--ca-root ${file}: cannot read the CA trust bundle: ${describeError(err)}`, { subject: file, cause: err });
      }
      roots = parseCached(text, `--ca-root ${file}`);
    } catch (err) {
      if (atStart) throw err;
      this.#logger.warn({ file, err: describeError(err) }, `--ca-root ${file} changed but cannot be used; keeping the trust bundle read before`);
      return false;
    }
    if (text === this.#caRootPem) return false;
    this.#caRootPem = text;
    this.#anchors = roots;
    return true;
  }

  readonly #onCaRootChange = (): void => {
    if (this.#stopped || !this.#loadCaRoot(false)) return;
    const bundle = mergeBundles(this.#caBundle, this.#anchors);
    if (sameCertificates(bundle, this.#served)) return;
    this.#logger.info({ file: this.options.caRootFile, roots: this.#anchors.length }, `--ca-root ${this.options.caRootFile} changed: updating the trust bundle served`);
    const held = this.#held;
    this.#served = bundle;
    try {
      if (held && this.#output) {
        this.#output.write({ certChainPem: held.issued.chainPem, keyPem: held.key.keyPem, rootCertPem: bundle.map((c) => c.pem).join('') }, this.#clock.now());
      }
    } catch (err) {
      this.#logger.error({ err: describeError(err) }, 'the new trust bundle could not be written to the files; it is served over SDS all the same');
    }
    this.#setRootCa('--ca-root');
    if (held) {
      const leaf = held.issued.leaf;
      this.#hook?.trigger({ reason: 'trust-bundle', spiffeId: held.issued.spiffeId, serial: opensslSerial(leaf.serial), notAfter: leaf.notAfter, outDir: this.#output?.dir ?? null, sdsUds: this.#sds?.addresses.uds ?? null });
    }
  };

  /** Pushes ROOTCA (the bundle served; at start, --ca-root). */
  #setRootCa(source: string): void {
    if (this.#served.length === 0) this.#served = [...this.#anchors];
    this.provider.set(SDS_ROOTCA, { kind: 'validationContext', trustedCa: this.#served.map((c) => c.pem).join('') });
    this.metrics.trustBundleRoots.set(this.#served.length);
    this.metrics.trustBundleUpdates.inc();
    this.emit('trust-bundle', { roots: this.#served.length, source });
  }

  /** Takes over a current certificate left in --out-dir by an earlier run (checked as a CA answer is). */
  #adopt(): boolean {
    const files = this.#output?.read();
    if (!files) return false;
    const dir = this.#output!.dir;
    try {
      const key = { keyPem: files.keyPem, privateKey: parsePrivateKey(files.keyPem, `${dir}/key.pem`) };
      const issued = checkIssuedChain({
        certChain: [files.certChainPem, files.rootCertPem],
        privateKey: key.privateKey,
        anchors: this.#anchors,
        expectedId: this.options.spiffeId ?? null,
        source: `--out-dir ${dir}`,
        at: this.#clock.now(),
      });
      this.#install({ issued, key, receivedAt: this.#clock.now(), credentialId: 'out-dir', pathSuffix: null }, 'out-dir', performance.now(), false);
      return true;
    } catch (err) {
      this.#logger.info({ dir, reason: describeError(err) }, `not reusing the files in ${dir}: ${describeError(err)}; getting a new certificate`);
      return false;
    }
  }
}

function sameCertificates(a: Certificate[], b: Certificate[]): boolean {
  return a.length === b.length && a.every((c, i) => c.fingerprint256 === b[i]!.fingerprint256);
}
