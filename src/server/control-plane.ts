import { Server, type ServerCredentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import {
  BootstrapTokenAuthenticator,
  CertificateAuthority,
  CertificateIssuer,
  ClientCertificateAuthenticator,
  CrlPublisher,
  JwtAuthenticator,
  OcspResponder,
  OcspRouter,
  RegistrationAuthority,
  Revoker,
  Revokers,
  SigningCas,
  caExists,
  hasSettings,
  initRootCa,
  type Authenticator,
  type RevocationListener,
} from '../ca/index.js';
import type { ServeConfig } from '../config/index.js';
import { serveRunsCa } from '../config/serve-config.js';
import { GatewaySecretProvider, SdsMetrics, SdsServer, sdsServerCredentials } from '../sds/index.js';
import { SecretSource, StapleCache, StapleMetrics, StapleRefresher, registerSecretMetrics } from '../secrets/index.js';
import { ErrorCodes, MeshError, describeError, silentLogger, systemClock, type Clock, type Logger } from '../core/index.js';
import { firstStartToken, type FirstToken } from './first-token.js';
import { BatchingLedger, openLedger, type Ledger } from '../store/index.js';
import { createCaGrpcService, type CertificateSigner } from './ca-grpc-service.js';
import { AdminEndpoint } from './admin-server.js';
import { AdminToken, defaultAdminTokenFile } from './admin-token.js';
import { HttpEndpoint, type HealthCheck } from './http-server.js';
import { ServerMetrics } from './metrics.js';
import { RevocationEndpoints } from './revocation-endpoints.js';
import { ServingCertificate } from './serving-certificate.js';
import { crlPathFor, openAdditionalDomains, type SigningDomain } from './signing-domain.js';

/** What a registration authority is built from; the control plane owns every piece and closes them. */
export interface SignerDeps {
  config: ServeConfig;
  dataDir: string;
  /** The main trust domain's CA and issuer. */
  ca: CertificateAuthority;
  issuer: CertificateIssuer;
  /** Every signing CA, one per trust domain (the main one first). */
  cas: SigningCas;
  ledger: Ledger;
  logger: Logger;
  clock: Clock;
}

/** A signer that holds resources (file watchers, timers) releases them on close. */
export type ClosableSigner = CertificateSigner & { close?: () => void | Promise<void> };

export interface ControlPlaneOptions {
  logger?: Logger;
  clock?: Clock;
  /**
   * Use the trust domain of an existing CA when it differs from the config's. `meshcert serve` without --config
   * sets it: its built-in default ("cluster.local") must not refuse a CA made with another trust domain.
   */
  adoptCaTrustDomain?: boolean;
  /**
   * Keep the public URL of an existing CA (ca.json) when the config's http.publicUrl differs. `meshcert serve`
   * without --config sets it: its built-in loopback URL must not replace one the CA was made with. Otherwise the
   * config's http.publicUrl is written into certificates issued from now on.
   */
  adoptCaPublicUrl?: boolean;
  /**
   * On the first start (the CA created now) with no bootstrap token file configured, make one one-time bootstrap
   * token in the data dir so that a first workload can get a certificate; later starts keep using that file.
   * `meshcert serve` without --config sets it.
   */
  firstStartBootstrapToken?: boolean;
  /** Builds the registration authority; the default wires the one in src/ca from config.auth. */
  createSigner?: (deps: SignerDeps) => ClosableSigner | Promise<ClosableSigner>;
  /** How long stop() lets in-flight calls finish before dropping them. */
  shutdownGraceMs?: number;
}

export interface ControlPlaneAddresses {
  /** HOST:PORT the CA gRPC API listens on (the real port when 0 was configured), or null when off. */
  grpc: string | null;
  /** HOST:PORT of the HTTP server (health, metrics, OCSP, CRL, roots), or null when off. */
  http: string | null;
  /** HOST:PORT of the admin API, or null when off. */
  admin: string | null;
  /** Envoy SDS, or null when off: the Unix socket's path, and HOST:PORT of the TLS listener (null when not set). */
  sds: { uds: string; listen: string | null } | null;
}

/** The default SDS socket when `sds` is on and `sds.uds` is not set. */
export function defaultSdsSocket(dataDir: string): string {
  return join(dataDir, 'sds.sock');
}

function readPem(file: string, field: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `${field} ${file}: cannot read: ${describeError(err)}`, { subject: field, cause: err });
  }
}

/** The registration authority of src/ca with the authenticators config.auth enables (none: every call is refused). */
export function defaultSigner(deps: SignerDeps): ClosableSigner {
  const { config, ca, cas, ledger, logger, clock } = deps;
  const auth = config.auth;
  const authenticators: Authenticator[] = [];
  // Bearer credentials first: a caller that sends a token means it, even over a connection with a client certificate.
  // Each authenticator yields identities of the trust domains signed for here; the RA picks the CA by trust domain.
  if (auth?.jwt.length) {
    authenticators.push(new JwtAuthenticator({ issuers: auth.jwt, trustDomain: ca.trustDomain, clockSkewMs: auth.clockSkew, clock }));
  }
  if (auth?.bootstrapTokens) {
    authenticators.push(new BootstrapTokenAuthenticator({ file: auth.bootstrapTokens, trustDomain: cas.trustDomains, ledger, clock }));
  }
  if (auth?.clientCertificates) authenticators.push(new ClientCertificateAuthenticator({ ca: cas.all.map((i) => i.ca), ledger, clock }));
  if (authenticators.length === 0) logger.warn('no authenticator is configured (auth): every CreateCertificate call will be refused');
  return new RegistrationAuthority({
    issuer: cas,
    ledger,
    authenticators,
    dnsGrants: config.issuance.dnsGrants,
    ...(config.rateLimit ? { rateLimit: config.rateLimit } : {}),
    maxCsrBytes: config.grpc?.maxCsrBytes ?? 16_384,
    logger,
    clock,
  });
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for localhost and loopback addresses: URLs only this machine can reach. */
export function isLoopbackUrl(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '').toLowerCase();
  } catch {
    return false;
  }
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host.startsWith('::ffff:127.');
  return false;
}

/**
 * The control plane process: the CA (created on first start), its ledger, the registration authority, the Istio
 * CA gRPC API with its own renewing serving certificate, the health/metrics HTTP server, the admin API, and Envoy
 * SDS for gateway secrets. With additionalTrustDomains, each other trust domain has a signing CA of its own (its
 * own folder, OCSP signer and CRL) beside the main one, sharing the ledger; the server's own certificates and the
 * first-start token stay the main trust domain's. Each endpoint runs only when its config section is present; a
 * config with only `sds` runs SDS alone, without creating or loading a CA (see serveRunsCa).
 */
export class ControlPlane {
  addresses: ControlPlaneAddresses = { grpc: null, http: null, admin: null, sds: null };
  /** True when start() created the CA because the data dir had none. */
  createdCa = false;
  /** The data dir's first-start bootstrap token, while it is in use (see firstStartBootstrapToken). */
  firstToken: FirstToken | null = null;
  /** The admin API's token file while the admin API is on; `created` when start() made it. */
  adminToken: { file: string; created: boolean } | null = null;
  /** The URL written into certificates issued now (AIA OCSP PUBLIC/ocsp, CRL DP PUBLIC/crl), if any. */
  publicUrl: string | null = null;
  readonly metrics = new ServerMetrics();
  #ca: CertificateAuthority | null = null;
  #issuer: CertificateIssuer | null = null;
  #ledger: Ledger | null = null;
  #signer: ClosableSigner | null = null;
  #serving: ServingCertificate | null = null;
  #grpc: Server | null = null;
  #http: HttpEndpoint | null = null;
  #admin: AdminEndpoint | null = null;
  #ocsp: OcspResponder | null = null;
  #crl: CrlPublisher | null = null;
  #revoker: Revoker | null = null;
  #revokers: Revokers | null = null;
  #domains: SigningDomain[] = [];
  #cas: SigningCas | null = null;
  #secretSource: SecretSource | null = null;
  #staples: StapleRefresher | null = null;
  #sds: SdsServer | null = null;
  /** The SDS listener's own serving certificate, when grpc is off but the CA runs (with grpc on, its one is shared). */
  #sdsServing: ServingCertificate | null = null;
  #logger: Logger = silentLogger;
  #graceMs = 5_000;
  #stopping: Promise<void> | null = null;

  /** Whether this control plane runs a mesh CA (false when the config has only an `sds` section). */
  get hasCa(): boolean {
    return this.#ca !== null;
  }

  /** The gateway secrets served over SDS, when sds is on. */
  get secretSource(): SecretSource | null {
    return this.#secretSource;
  }

  /** OCSP staple fetching for the gateway secrets, when sds is on and sds.staples.fetch is not off. */
  get stapleRefresher(): StapleRefresher | null {
    return this.#staples;
  }

  /** The SDS server, when sds is on. */
  get sdsServer(): SdsServer | null {
    return this.#sds;
  }

  get ca(): CertificateAuthority {
    if (!this.#ca) throw new MeshError(ErrorCodes.INTERNAL, 'the control plane is not started');
    return this.#ca;
  }

  get issuer(): CertificateIssuer {
    if (!this.#issuer) throw new MeshError(ErrorCodes.INTERNAL, 'the control plane is not started');
    return this.#issuer;
  }

  get ledger(): Ledger {
    if (!this.#ledger) throw new MeshError(ErrorCodes.INTERNAL, 'the control plane is not started');
    return this.#ledger;
  }

  /** Revocation in the main CA through the ledger and its OCSP/CRL caches. */
  get revoker(): Revoker {
    if (!this.#revoker) throw new MeshError(ErrorCodes.INTERNAL, 'the control plane is not started');
    return this.#revoker;
  }

  /** Revocation in the CA of the right trust domain (what the admin API calls). */
  get revokers(): Revokers {
    if (!this.#revokers) throw new MeshError(ErrorCodes.INTERNAL, 'the control plane is not started');
    return this.#revokers;
  }

  /** Every signing CA, one per trust domain, the main one first. */
  get cas(): SigningCas {
    if (!this.#cas) throw new MeshError(ErrorCodes.INTERNAL, 'the control plane is not started');
    return this.#cas;
  }

  /** The trust domains signed for (the main one first) with their CA, folder, CRL path and revocation services. */
  get signingDomains(): readonly SigningDomain[] {
    return this.#domains;
  }

  /** The main CA's OCSP responder, when HTTP is on (see signingDomains for the others'). */
  get ocspResponder(): OcspResponder | null {
    return this.#ocsp;
  }

  /** The main CA's CRL publisher, when HTTP is on (see signingDomains for the others'). */
  get crlPublisher(): CrlPublisher | null {
    return this.#crl;
  }

  /** The gRPC serving certificate, when gRPC is on. */
  get servingCertificate(): ServingCertificate | null {
    return this.#serving;
  }

  async start(config: ServeConfig, dataDir: string, options: ControlPlaneOptions = {}): Promise<this> {
    const logger = (this.#logger = options.logger ?? silentLogger);
    const clock = options.clock ?? systemClock;
    this.#graceMs = options.shutdownGraceMs ?? 5_000;
    try {
      if (serveRunsCa(config)) await this.#startCa(config, dataDir, options, logger, clock);
      else logger.info({ dataDir }, 'only the sds section is configured: SDS runs alone, with no mesh CA');
      if (config.sds) await this.#startSds(config, dataDir, logger, clock);
      return this;
    } catch (err) {
      await this.stop().catch(() => undefined);
      throw err;
    }
  }

  /** The CA and every endpoint that needs it: gRPC, HTTP (OCSP, CRL, health, metrics), admin. */
  async #startCa(config: ServeConfig, dataDir: string, options: ControlPlaneOptions, logger: Logger, clock: Clock): Promise<void> {
    if (!caExists(dataDir)) {
      const init = await initRootCa(dataDir, { trustDomain: config.trustDomain, publicUrl: config.http?.publicUrl, clock });
      this.createdCa = true;
      logger.info({ dataDir, trustDomain: config.trustDomain, subject: init.cert.subject, notAfter: init.cert.notAfter.toISOString() }, 'created a mesh CA (the data dir had none)');
    }
    let ca = await CertificateAuthority.load(dataDir, { clock, logger });
    if (ca.trustDomain !== config.trustDomain && !options.adoptCaTrustDomain) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `trustDomain: the config says "${config.trustDomain}" but the CA in ${dataDir} signs for "${ca.trustDomain}"; make them agree`,
        { subject: 'trustDomain' },
      );
    }
    ca = this.#ca = this.#choosePublicUrl(ca, config, options, logger);
    // Group commit: concurrent issuances share one transaction; each caller still waits for its own row.
    const ledger = (this.#ledger = new BatchingLedger(openLedger(dataDir, { clock })));
    if (this.createdCa) await ledger.audit({ type: 'ca-init', subject: ca.cert.subject, details: { mode: 'self-signed', serial: ca.cert.serial, by: 'serve' } });
    const issuer = (this.#issuer = new CertificateIssuer(ca, ledger, {
      trustDomain: ca.trustDomain,
      defaultTtlMs: config.issuance.defaultTtl,
      maxTtlMs: config.issuance.maxTtl,
      backdateMs: config.issuance.backdate,
    }));
    const mainDomain: SigningDomain = {
      trustDomain: ca.trustDomain,
      main: true,
      folder: dataDir,
      source: this.createdCa ? 'created' : hasSettings(dataDir) ? 'meshcert' : 'istio',
      ca,
      issuer,
      crlPath: crlPathFor(ca.trustDomain, true),
      ocsp: null,
      crl: null,
      revoker: null,
    };
    // The other trust domains' CAs, each in its own folder; the ledger is shared (keyed by issuer key and serial).
    const domains = (this.#domains = [mainDomain, ...(await openAdditionalDomains({ config, dataDir, publicUrl: this.publicUrl, ledger, clock, logger }))]);
    const cas = (this.#cas = new SigningCas(domains.map((d) => d.issuer)));
    for (const d of domains) {
      this.metrics.setCaNotAfter(d.trustDomain, d.ca.maxNotAfter);
      logger.info(
        { trustDomain: d.trustDomain, subject: d.ca.cert.subject, folder: d.folder, ...(d.source === 'created' ? { created: true } : {}), ...(d.main ? { main: true } : {}) },
        d.source === 'created' ? `trust domain ${d.trustDomain}: created its signing CA in ${d.folder}` : `trust domain ${d.trustDomain}: signing CA "${d.ca.cert.subject}" from ${d.folder}`,
      );
    }

    if (config.grpc) {
      const grpcConfig = config.grpc;
      if (options.firstStartBootstrapToken && config.auth && !config.auth.bootstrapTokens) {
        this.firstToken = firstStartToken(dataDir, ca.trustDomain, this.createdCa, clock);
        if (this.firstToken) {
          config = { ...config, auth: { ...config.auth, bootstrapTokens: this.firstToken.listFile } };
          logger.info({ tokenFile: this.firstToken.tokenFile, identity: this.firstToken.identity }, 'first-start bootstrap token in use');
        }
      }
      const createSigner = options.createSigner ?? defaultSigner;
      this.#signer = await createSigner({ config, dataDir, ca, issuer, cas, ledger, logger, clock });
      const serving = (this.#serving = new ServingCertificate({
        issuer,
        dnsNames: grpcConfig.dnsNames,
        ttlMs: grpcConfig.certificateTtl,
        logger,
        metrics: this.metrics,
      }));
      await serving.start();
      const server = (this.#grpc = new Server({
        // A CSR plus a little metadata: anything much larger is refused by grpc-js before it is buffered whole.
        'grpc.max_receive_message_length': Math.max(64 * 1024, grpcConfig.maxCsrBytes * 2 + 16 * 1024),
      }));
      const service = createCaGrpcService({ signer: this.#signer, logger, metrics: this.metrics, maxInFlight: grpcConfig.maxInFlight });
      server.addService(service.definition, service.implementation);
      // grpc-js hands a client certificate to the service only when it verifies against the TLS trust bundle: with
      // several trust domains, that bundle holds every CA's chain, so each trust domain's SVIDs can renew.
      const others = domains.filter((d) => !d.main).flatMap((d) => [...d.ca.intermediates, ...d.ca.roots]);
      const credentials = others.length ? serving.credentialsWithClientCa([serving.clientCaPem, ...others.map((c) => c.pem)].join('\n'), false) : serving.credentials();
      const { host, port } = grpcConfig.listen;
      const bound = await new Promise<number>((resolve, reject) => {
        server.bindAsync(hostPort(host, port), credentials, (err, p) => (err ? reject(err) : resolve(p)));
      }).catch((err: unknown) => {
        throw new MeshError(ErrorCodes.CONFIG, `grpc.listen ${hostPort(host, port)}: cannot listen: ${describeError(err)}`, { subject: 'grpc.listen', cause: err });
      });
      this.addresses.grpc = hostPort(host, bound);
      logger.info({ address: this.addresses.grpc, dnsNames: grpcConfig.dnsNames }, 'CA gRPC API (istio.v1.auth.IstioCertificateService) listening');
    }

    let routes: RevocationEndpoints | undefined;
    if (config.http) {
      const metrics = this.metrics;
      for (const d of domains) {
        const trust_domain = d.trustDomain;
        const ocsp = (d.ocsp = new OcspResponder({
          issuer: d.issuer,
          responseValidityMs: config.ocsp.responseValidity,
          signerTtlMs: config.ocsp.signerTtl,
          maxEntries: config.ocsp.cacheEntries,
          logger: d.main ? logger : logger.child({ trustDomain: trust_domain }),
          onSigner: (cert) => metrics.setOcspSignerNotAfter(trust_domain, cert.notAfter),
          onSignerRenewal: (ok) => metrics.ocspSignerRenewals.inc({ trust_domain, result: ok ? 'ok' : 'error' }),
          onSigned: (status, seconds) => metrics.ocspSignSeconds.observe({ status }, seconds),
        }));
        await ocsp.start();
        const crl = (d.crl = new CrlPublisher({
          ca: d.ca,
          ledger,
          validityMs: config.crl.validity,
          logger: d.main ? logger : logger.child({ trustDomain: trust_domain }),
          onPublish: (c) => metrics.setCrl(trust_domain, { bytes: c.der.length, entries: c.entries, crlNumber: c.crlNumber, thisUpdate: c.thisUpdate, nextUpdate: c.nextUpdate }),
          onGeneration: (ok) => metrics.crlGenerations.inc({ trust_domain, result: ok ? 'ok' : 'error' }),
        }));
        await crl.start();
      }
      this.#ocsp = mainDomain.ocsp;
      this.#crl = mainDomain.crl;
      routes = new RevocationEndpoints({
        // One URL for every CA: the CertID's issuer hashes pick the responder.
        ocsp: new OcspRouter(domains.map((d) => d.ocsp!)),
        domains: domains.map((d) => ({ trustDomain: d.trustDomain, crlPath: d.crlPath, crl: d.crl!, trustBundlePem: d.ca.trustBundlePem })),
        maxRequestBytes: config.ocsp.maxRequestBytes,
        metrics,
        logger,
      });
    }
    for (const d of domains) {
      const listeners: RevocationListener[] = d.ocsp && d.crl ? [d.ocsp, d.crl] : [];
      d.revoker = new Revoker(d.ca, ledger, listeners, { logger: d.main ? logger : logger.child({ trustDomain: d.trustDomain }) });
    }
    this.#revoker = mainDomain.revoker;
    const revokers = (this.#revokers = new Revokers(domains.map((d) => d.revoker!)));

    if (config.http) {
      const http = (this.#http = new HttpEndpoint({ metrics: this.metrics, checks: this.#healthChecks(), logger, ...(routes ? { routes } : {}) }));
      const { host, port } = config.http.listen;
      const addr = await http.listen(host, port).catch((err: unknown) => {
        throw new MeshError(ErrorCodes.CONFIG, `http.listen ${hostPort(host, port)}: cannot listen: ${describeError(err)}`, { subject: 'http.listen', cause: err });
      });
      this.addresses.http = hostPort(host, addr.port);
      const crls = Object.fromEntries(domains.map((d) => [d.trustDomain, this.publicUrl ? `${this.publicUrl}${d.crlPath}` : null]));
      logger.info(
        { address: this.addresses.http, ocsp: this.publicUrl ? `${this.publicUrl}/ocsp` : null, crl: crls[mainDomain.trustDomain], ...(domains.length > 1 ? { crls } : {}) },
        `HTTP listening: /ocsp, ${domains.map((d) => d.crlPath).join(', ')}, /roots, /healthz, /metrics`,
      );
    }

    if (config.admin) {
      const made = config.admin.tokenFile ? { path: config.admin.tokenFile, created: false } : defaultAdminTokenFile(dataDir);
      const token = new AdminToken(made.path);
      try {
        token.load(logger);
      } catch (err) {
        throw new MeshError(ErrorCodes.CONFIG, `admin.tokenFile: ${describeError(err)}`, { subject: 'admin.tokenFile', cause: err });
      }
      this.adminToken = { file: made.path, created: made.created };
      const admin = (this.#admin = new AdminEndpoint({ token, revokers, ledger, metrics: this.metrics, clock, logger }));
      const { host, port } = config.admin.listen;
      const addr = await admin.listen(host, port).catch((err: unknown) => {
        throw new MeshError(ErrorCodes.CONFIG, `admin.listen ${hostPort(host, port)}: cannot listen: ${describeError(err)}`, { subject: 'admin.listen', cause: err });
      });
      this.addresses.admin = hostPort(host, addr.port);
      if (!isLoopbackUrl(`http://${this.addresses.admin}`)) {
        logger.warn({ address: this.addresses.admin }, 'the admin API listens beyond loopback over plain HTTP: its bearer token crosses the network in clear');
      }
      logger.info({ address: this.addresses.admin, tokenFile: made.path, created: made.created }, 'admin API listening: POST /revoke, GET /certificates');
    }
  }

  /**
   * Envoy SDS over the gateway secrets in sds.secrets: plain gRPC on the Unix socket (sds.uds, default
   * DATA-DIR/sds.sock) and, with sds.listen, gRPC with TLS. The listener's certificate is sds.certFile/keyFile when
   * given, else the mesh CA's serving certificate (the gRPC API's one when grpc is on, for grpc.dnsNames; else one
   * of its own for the default names istiod.istio-system.svc and localhost), renewed without a restart. With
   * sds.clientCaFile, client certificates verified against it are required on the listener. Metrics go to the
   * control plane's registry (/metrics when http is on).
   */
  async #startSds(config: ServeConfig, dataDir: string, logger: Logger, clock: Clock): Promise<void> {
    const sds = config.sds!;
    // Staples fetched from the certificates' responders, cached in DATA-DIR/ocsp-staples (see staple-refresher.ts).
    const fetch = sds.staples?.fetch ?? 'wanted';
    let staples: StapleRefresher | null = null;
    if (fetch !== 'off') {
      const stapleMetrics = new StapleMetrics(this.metrics.registry, () => staples?.states() ?? [], () => clock.now());
      staples = this.#staples = new StapleRefresher({
        cache: StapleCache.forDataDir(dataDir),
        clock,
        logger,
        scope: fetch,
        observer: stapleMetrics,
        ...(sds.staples?.nonce !== undefined ? { nonce: sds.staples.nonce } : {}),
        ...(sds.staples?.timeout !== undefined ? { timeoutMs: sds.staples.timeout } : {}),
        ...(sds.staples?.maxRetryInterval !== undefined ? { schedule: { retryMaxMs: sds.staples.maxRetryInterval } } : {}),
      });
    }
    const source = (this.#secretSource = SecretSource.open({
      paths: [sds.secrets],
      clock,
      logger,
      ...(sds.ocspPolicies ? { policies: sds.ocspPolicies } : {}),
      ...(staples ? { staples } : {}),
    }));
    registerSecretMetrics(this.metrics.registry, source, () => clock.now());
    const metrics = new SdsMetrics(this.metrics.registry);
    let listen: { host: string; port: number; credentials: ServerCredentials } | undefined;
    if (sds.listen) {
      const clientCaPem = sds.clientCaFile ? readPem(sds.clientCaFile, 'sds.clientCaFile') : undefined;
      let credentials: ServerCredentials;
      if (sds.certFile && sds.keyFile) {
        credentials = sdsServerCredentials({
          certChainPem: readPem(sds.certFile, 'sds.certFile'),
          keyPem: readPem(sds.keyFile, 'sds.keyFile'),
          ...(clientCaPem ? { clientCaPem } : {}),
        });
      } else {
        if (!this.#issuer) {
          throw new MeshError(ErrorCodes.CONFIG, 'sds.listen needs sds.certFile and sds.keyFile when no mesh CA runs (only an sds section); or use only sds.uds', {
            subject: 'sds.listen',
          });
        }
        let serving = this.#serving;
        if (!serving) {
          serving = this.#sdsServing = new ServingCertificate({
            issuer: this.#issuer,
            dnsNames: ['istiod.istio-system.svc', 'localhost'],
            ttlMs: 24 * 3600_000,
            logger,
          });
          await serving.start();
        }
        credentials = clientCaPem ? serving.credentialsWithClientCa(clientCaPem, true) : serving.credentials();
      }
      listen = { host: sds.listen.host, port: sds.listen.port, credentials };
    }
    const server = (this.#sds = await SdsServer.start({
      provider: new GatewaySecretProvider(source),
      logger,
      metrics,
      uds: sds.uds ?? defaultSdsSocket(dataDir),
      ...(listen ? { listen } : {}),
      ...(sds.authorization ? { authorization: sds.authorization } : {}),
      controlPlaneId: 'meshcert',
    }));
    const bound = server.addresses.listen;
    this.addresses.sds = { uds: server.addresses.uds!, listen: bound ? hostPort(bound.host, bound.port) : null };
    logger.info({ ...this.addresses.sds, secrets: sds.secrets, mtls: Boolean(sds.clientCaFile) }, 'Envoy SDS (envoy.service.secret.v3.SecretDiscoveryService) listening');
  }

  /**
   * The URL issued certificates carry (AIA OCSP and CRL distribution point): http.publicUrl when configured (it is
   * where this server answers), else the one in ca.json. Warns when it is a loopback address, since it stays in
   * every certificate for its whole life and only this machine can reach it.
   */
  #choosePublicUrl(ca: CertificateAuthority, config: ServeConfig, options: ControlPlaneOptions, logger: Logger): CertificateAuthority {
    const configured = config.http?.publicUrl?.replace(/\/+$/, '');
    const fromCa = ca.settings.publicUrl;
    let url = fromCa;
    if (configured && configured !== fromCa) {
      if (options.adoptCaPublicUrl && fromCa) {
        logger.info({ publicUrl: fromCa }, 'using the public URL the CA was created with (ca.json)');
      } else {
        url = configured;
        if (fromCa) {
          logger.warn(
            { configured, ca: fromCa },
            'http.publicUrl differs from the URL in ca.json: certificates issued from now on carry http.publicUrl; those issued before keep the old one',
          );
        }
      }
    }
    this.publicUrl = url ?? null;
    if (config.http && !url) {
      logger.warn('no http.publicUrl: issued certificates carry no OCSP URL and no CRL distribution point; set http.publicUrl to where clients reach this server');
    } else if (url && isLoopbackUrl(url)) {
      logger.warn(
        { publicUrl: url },
        'the public URL is a loopback address and is written into every certificate issued (OCSP URL, CRL distribution point) for its whole life: only this machine can reach it. Fine for a laptop; set http.publicUrl for anything else',
      );
    }
    return url === fromCa ? ca : ca.withPublicUrl(url);
  }

  #healthChecks(): Record<string, HealthCheck> {
    const checks: Record<string, HealthCheck> = {
      ca: async () => {
        const expired = this.#domains.filter((d) => d.ca.clock.now().getTime() >= d.ca.maxNotAfter.getTime());
        if (expired.length === 0) return { ok: true };
        const what = expired.map((d) => `${this.#domains.length > 1 ? `the CA of trust domain ${d.trustDomain}` : 'the CA'} expired at ${d.ca.maxNotAfter.toISOString()}`);
        return { ok: false, reason: what.join('; ') };
      },
      ledger: async () => {
        // The cheapest real read: newest row by primary key.
        await this.ledger.list({ limit: 1 });
        return { ok: true };
      },
    };
    if (this.#serving) {
      const serving = this.#serving;
      checks.grpc = async () => serving.health();
    }
    // The main CA's checks keep their names; another trust domain's carry it: "ocsp partner.example".
    for (const d of this.#domains) {
      const suffix = d.main ? '' : ` ${d.trustDomain}`;
      const { ocsp, crl } = d;
      if (ocsp) checks[`ocsp${suffix}`] = async () => ocsp.health();
      if (crl) checks[`crl${suffix}`] = async () => crl.health();
    }
    return checks;
  }

  /** Graceful: stops accepting, lets in-flight calls finish (up to the grace period), then closes the ledger. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#serving?.stop();
    this.#sdsServing?.stop();
    const grpc = this.#grpc;
    const tasks: Promise<unknown>[] = [];
    if (this.#sds) tasks.push(this.#sds.close(this.#graceMs));
    if (grpc) {
      tasks.push(
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            grpc.forceShutdown();
            resolve();
          }, this.#graceMs);
          timer.unref();
          grpc.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        }),
      );
    }
    if (this.#http) tasks.push(this.#http.close(this.#graceMs));
    if (this.#admin) tasks.push(this.#admin.close(this.#graceMs));
    await Promise.all(tasks);
    this.#staples?.close();
    this.#secretSource?.close();
    for (const d of this.#domains) {
      d.ocsp?.stop();
      d.crl?.stop();
    }
    try {
      await this.#signer?.close?.();
    } catch (err) {
      this.#logger.warn({ error: describeError(err) }, 'closing the registration authority failed');
    }
    await this.#ledger?.close();
    this.#logger.info('control plane stopped');
  }
}
