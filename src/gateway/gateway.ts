// The gateway process: the gateway file (watched), the credential store (secrets folder or SDS), one PortListener per
// port, the HTTP proxy behind them, the admin listener. A change to the file is applied without a restart and
// without dropping established connections; a broken file keeps the running config and says why (log, metric,
// /config_dump). A certificate change rebuilds the TLS contexts for new handshakes.
import type { TrafficPolicy } from '../config/index.js';
import { statSync, watch, type FSWatcher } from 'node:fs';
import type { ChannelCredentials } from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { loadGatewayFile, type GatewayFileConfig } from '../config/index.js';
import { describeError, silentLogger, systemClock, type Clock, type Logger } from '../core/index.js';
import { SecretSource, StapleCache, StapleMetrics, StapleRefresher, type OcspPolicy } from '../secrets/index.js';
import { SdsClient } from '../sds/index.js';
import { AdminServer } from './admin-server.js';
import type { Admission, ConnectionContext, ConnectionHandler } from './connection-context.js';
import { ROOT_CA, SdsCredentialStore, SecretsCredentialStore, WORKLOAD_CERT, type CredentialStore, type ServingCredential, type ValidationCredential } from './credential-store.js';
import { buildGatewayPlan, type GatewayPlan } from './gateway-plan.js';
import { GatewayMetrics } from './gateway-metrics.js';
import { HttpProxy } from './http-proxy.js';
import { PeerValidationMetrics, buildPeerValidation, validationFor, type PeerValidationPipeline } from './peer-validation.js';
import { OcspValidator } from './ocsp-validator.js';
import { PortListener, type PortPlan, type ServerPlan } from './listener.js';
import { StaplingCache } from './stapling.js';
import type { IstioCredential, UpstreamCredential } from './upstream-pool.js';

export type CredentialSourceOptions =
  | { secrets: string[]; policies?: Readonly<Record<string, OcspPolicy>> }
  | { sds: { target: string; credentials?: ChannelCredentials; serverName?: string; nodeId?: string }; policies?: Readonly<Record<string, OcspPolicy>> };

/** What stands behind the listeners: gateway-HTTP's HttpProxy by default; tests may pass a stand-in. */
export interface ProxyHandler extends ConnectionHandler {
  update?(config: GatewayFileConfig): void;
  close?(): Promise<void>;
}

export interface GatewayOptions {
  file: string;
  credentials: CredentialSourceOptions;
  /** Overrides GatewayOptions' admin.listen; undefined and none in the file = no admin listener. */
  adminListen?: { host: string; port: number } | undefined;
  /** Address for servers without `bind`. Default 0.0.0.0, as Istio's gateways. */
  defaultBind?: string;
  /** Config port → port to bind (tests bind 0 and read `boundPorts`). */
  portOverrides?: Readonly<Record<number, number>>;
  clock?: Clock;
  logger?: Logger;
  /** Connection and request records; default: the logger, when GatewayOptions' accessLog is enabled. */
  accessLog?: Logger;
  registry?: Registry;
  handler?: (config: GatewayFileConfig, gateway: Gateway) => ProxyHandler;
  /**
   * Issue #9: the asynchronous validators' verdict for a connection whose client certificate passed the
   * synchronous checks (read at each connection, so it may follow reloads through `gateway.config`).
   */
  admit?: (server: ServerPlan, ctx: ConnectionContext, gateway: Gateway) => Promise<Admission> | undefined;
  /**
   * With a secrets folder: fetch the certificates' OCSP staples from their responders and keep them fresh, as
   * `meshcert serve` does (`wanted`: certificates with a policy, must-staple or a staple of their own; `all`; `off`).
   * Default `off` here; the command turns it on. Fetched staples are cached in DATA-DIR/ocsp-staples when `dataDir` is given.
   */
  fetchStaples?: 'wanted' | 'all' | 'off';
  dataDir?: string;
  /** Watch the file (fs.watch + a poll). Default true. */
  watch?: boolean;
  pollIntervalMs?: number;
}

interface Listening {
  listener: PortListener;
  bound: number;
}

/** What the file asks for that this gateway does not do (envoy-config renders it for Envoy): said, not ignored. */
export function gatewayWarnings(config: GatewayFileConfig): string[] {
  const out: string[] = [];
  for (const vs of config.virtualServices) {
    vs.spec.http.forEach((route, i) => {
      if (route.retries?.retryRemoteLocalities) {
        out.push(`document ${vs.document} (VirtualService ${vs.name}) http[${i}].retries.retryRemoteLocalities: no effect in meshcert gateway (it has no locality-aware load balancing)`);
      }
    });
  }
  for (const dr of config.destinationRules) {
    const policies: Array<[string, TrafficPolicy | undefined]> = [
      ['trafficPolicy', dr.spec.trafficPolicy],
      ...(dr.spec.subsets ?? []).map((sub, i): [string, TrafficPolicy | undefined] => [`subsets[${i}].trafficPolicy`, sub.trafficPolicy]),
    ];
    for (const [where, tp] of policies) {
      const layers: Array<[string, TrafficPolicy['connectionPool']]> = [
        [where, tp?.connectionPool],
        ...(tp?.portLevelSettings ?? []).map((pl, i): [string, TrafficPolicy['connectionPool']] => [`${where}.portLevelSettings[${i}]`, pl.connectionPool]),
      ];
      for (const [at, pool] of layers) {
        for (const [field, value] of [
          ['http.maxConcurrentStreams', pool?.http?.maxConcurrentStreams],
          ['tcp.maxConnectionDuration', pool?.tcp?.maxConnectionDuration],
        ] as const) {
          if (value) out.push(`document ${dr.document} (DestinationRule ${dr.name}) ${at}.connectionPool.${field}: not applied by meshcert gateway; meshcert envoy-config renders it for Envoy`);
        }
      }
    }
  }
  return out;
}

function fileSignature(path: string): string {
  try {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    return 'missing';
  }
}

export class Gateway {
  readonly metrics: GatewayMetrics;
  readonly store: CredentialStore;
  readonly stapling: StaplingCache;
  readonly #options: GatewayOptions;
  readonly #logger: Logger;
  readonly #clock: Clock;
  #config: GatewayFileConfig;
  #plan: GatewayPlan;
  #handler!: ProxyHandler;
  #accessLog: Logger | undefined;
  readonly #listeners = new Map<number, Listening>();
  #admin: AdminServer | null = null;
  #watcher: FSWatcher | null = null;
  #poll: NodeJS.Timeout | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #signature: string;
  #loadedAt: Date;
  #lastReload: { at: Date; ok: boolean; error?: string } | null = null;
  #closed = false;
  #reloading: Promise<boolean> | null = null;
  #secretSource: SecretSource | null = null;
  #staples: StapleRefresher | null = null;
  readonly #upstreamCache = new Map<string, { key: string; value: UpstreamCredential }>();
  /** Issue #9: the asynchronous validators of each server port, from GatewayOptions.validation. */
  #validation = new Map<number, PeerValidationPipeline>();
  readonly #validationMetrics: PeerValidationMetrics;
  /** OCSP validators by their settings, kept across reloads so that their answer caches survive them. */
  readonly #ocspValidators = new Map<string, OcspValidator>();
  #istioCache: { key: string; value: IstioCredential } | null = null;

  private constructor(options: GatewayOptions, config: GatewayFileConfig) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
    this.#config = config;
    this.#signature = fileSignature(options.file);
    this.#loadedAt = this.#clock.now();
    this.metrics = new GatewayMetrics(options.registry);
    this.stapling = new StaplingCache(this.#clock);
    this.#plan = buildGatewayPlan(config, { defaultBind: options.defaultBind ?? '0.0.0.0' });
    this.#accessLog = this.#accessLogFor(config);
    this.#validationMetrics = new PeerValidationMetrics(this.metrics.registry);
    this.#validation = this.#buildValidation(config);
    const c = options.credentials;
    if ('secrets' in c) {
      const fetch = options.fetchStaples ?? 'off';
      if (fetch !== 'off') {
        const observer = new StapleMetrics(this.metrics.registry, () => this.#staples?.states() ?? [], () => this.#clock.now());
        this.#staples = new StapleRefresher({
          cache: options.dataDir ? StapleCache.forDataDir(options.dataDir) : null,
          clock: this.#clock,
          logger: this.#logger,
          scope: fetch,
          observer,
        });
      }
      this.#secretSource = SecretSource.open({
        paths: c.secrets,
        clock: this.#clock,
        logger: this.#logger,
        ...(c.policies ? { policies: c.policies } : {}),
        ...(this.#staples ? { staples: this.#staples } : {}),
      });
      this.store = new SecretsCredentialStore(this.#secretSource);
    } else {
      const client = new SdsClient({
        target: c.sds.target,
        ...(c.sds.credentials ? { credentials: c.sds.credentials } : {}),
        ...(c.sds.serverName ? { serverName: c.sds.serverName } : {}),
        names: [],
        node: { id: c.sds.nodeId ?? 'meshcert-gateway', cluster: 'meshcert-gateway' },
        logger: this.#logger,
      });
      this.store = new SdsCredentialStore(client, { logger: this.#logger, ...(c.policies ? { policies: c.policies } : {}) });
    }
    this.store.want(this.#plan.credentials);
    this.store.onChange(() => this.#credentialsChanged());
  }

  /** Loads the file (a broken one is a startup error), binds every port, starts SDS and the admin listener. */
  static async start(options: GatewayOptions): Promise<Gateway> {
    const config = loadGatewayFile(options.file);
    const gw = new Gateway(options, config);
    try {
      for (const w of [...config.warnings, ...gatewayWarnings(config)]) gw.#logger.warn({ file: options.file }, w);
      gw.#handler = options.handler
        ? options.handler(config, gw)
        : new HttpProxy({
            config,
            credentials: (name) => gw.upstreamCredential(name),
            istioCredentials: () => gw.istioCredential(),
            registry: gw.metrics.registry,
            logger: gw.#logger,
            onAccessLog: (record) => gw.#accessLog?.info({ ...record, type: 'request' }, 'request'),
          });
      if (gw.store instanceof SdsCredentialStore) gw.store.client.start();
      for (const p of gw.#plan.ports) await gw.#openPort(p);
      gw.#refreshExpiry();
      const admin = options.adminListen ?? (config.options.admin ? { host: config.options.admin.listen.host, port: config.options.admin.listen.port } : undefined);
      if (admin) {
        gw.#admin = await AdminServer.start(admin, { registry: gw.metrics.registry, health: () => gw.health(), configDump: () => gw.configDump() }, gw.#logger);
      }
      if (options.watch ?? true) gw.#startWatching();
      gw.#logger.info({ file: options.file, ports: gw.boundPorts, credentials: gw.store.kind }, 'gateway started');
      return gw;
    } catch (err) {
      await gw.close();
      throw err;
    }
  }

  get config(): GatewayFileConfig {
    return this.#config;
  }

  /** Config port → bound port. */
  get boundPorts(): Record<number, number> {
    return Object.fromEntries([...this.#listeners].map(([p, l]) => [p, l.bound]));
  }

  get adminAddress(): { host: string; port: number } | null {
    const a = this.#admin?.address;
    return a ? { host: a.address, port: a.port } : null;
  }

  get handler(): ProxyHandler {
    return this.#handler;
  }

  /** DestinationRule origination material for a credentialName (same object while unchanged). */
  upstreamCredential(name: string): UpstreamCredential | undefined {
    const s = this.store.serving(name);
    const v = this.store.validation(name);
    if (!s && !v) return undefined;
    const key = `${s?.version ?? '-'}|${v?.version ?? '-'}`;
    const hit = this.#upstreamCache.get(name);
    if (hit && hit.key === key) return hit.value;
    const value: UpstreamCredential = {
      ...(s ? { key: s.keyPem, certChain: s.certPem } : {}),
      ...(v ? { ca: v.caPem, ...(v.crlPem ? { crl: v.crlPem } : {}) } : {}),
    };
    this.#upstreamCache.set(name, { key, value });
    return value;
  }

  /** The gateway's workload identity (`default` + `ROOTCA`) for ISTIO_MUTUAL origination. */
  istioCredential(): IstioCredential | undefined {
    const s = this.store.serving(WORKLOAD_CERT);
    const v = this.store.validation(ROOT_CA);
    if (!s || !v) return undefined;
    const key = `${s.version}|${v.version}`;
    if (this.#istioCache?.key === key) return this.#istioCache.value;
    this.#istioCache = { key, value: { key: s.keyPem, certChain: s.certPem, trustBundle: v.caPem } };
    return this.#istioCache.value;
  }

  /**
   * Re-reads the file now. A file that does not load keeps the running config: false, with the reason logged,
   * counted and shown in /config_dump.
   */
  async reload(): Promise<boolean> {
    // One reload at a time: a change noticed during one is applied right after it.
    while (this.#reloading) await this.#reloading.catch(() => undefined);
    const run = this.#reload();
    this.#reloading = run;
    try {
      return await run;
    } finally {
      if (this.#reloading === run) this.#reloading = null;
    }
  }

  async #reload(): Promise<boolean> {
    if (this.#closed) return false;
    this.#signature = fileSignature(this.#options.file);
    let config: GatewayFileConfig;
    let plan: GatewayPlan;
    try {
      config = loadGatewayFile(this.#options.file);
      plan = buildGatewayPlan(config, { defaultBind: this.#options.defaultBind ?? '0.0.0.0' });
    } catch (err) {
      const error = describeError(err);
      this.#lastReload = { at: this.#clock.now(), ok: false, error };
      this.metrics.configReloads.inc({ result: 'rejected' });
      this.#logger.error({ file: this.#options.file, error }, 'gateway file not applied; the running configuration stays');
      return false;
    }
    for (const w of [...config.warnings, ...gatewayWarnings(config)]) this.#logger.warn({ file: this.#options.file }, w);
    this.#config = config;
    this.#plan = plan;
    this.#accessLog = this.#accessLogFor(config);
    const oldValidation = this.#validation;
    this.#validation = this.#buildValidation(config);
    // Connections admitted earlier keep their verdicts; the old pipelines' HTTP agents go.
    for (const p of oldValidation.values()) if (![...this.#validation.values()].includes(p)) p.close();
    this.store.want(plan.credentials);
    const wanted = new Set(plan.ports.map((p) => p.port));
    for (const [port, l] of [...this.#listeners]) {
      if (!wanted.has(port)) {
        await l.listener.close(false);
        this.#listeners.delete(port);
        this.#logger.info({ port }, 'port removed; its open connections run to their end');
      }
    }
    for (const p of plan.ports) {
      const l = this.#listeners.get(p.port);
      if (l && l.listener.plan.bind === p.bind) l.listener.update(p);
      else {
        if (l) {
          await l.listener.close(false);
          this.#listeners.delete(p.port);
        }
        try {
          await this.#openPort(p);
        } catch (err) {
          this.#logger.error({ port: p.port, err: describeError(err) }, 'cannot listen on a port of the new configuration');
        }
      }
    }
    this.#handler.update?.(config);
    this.#refreshExpiry();
    this.#loadedAt = this.#clock.now();
    this.#lastReload = { at: this.#loadedAt, ok: true };
    this.metrics.configReloads.inc({ result: 'applied' });
    this.#logger.info({ file: this.#options.file, ports: this.boundPorts }, 'gateway file applied');
    return true;
  }

  health(): { healthy: boolean; problems: string[] } {
    const problems: string[] = [];
    for (const l of this.#listeners.values()) {
      for (const s of l.listener.describe()) {
        if (s.ready === false) problems.push(`${String(s.id)}: ${String(s.problem ?? 'not ready')}`);
      }
    }
    return { healthy: problems.length === 0, problems };
  }

  configDump(): Record<string, unknown> {
    const at = this.#clock.now();
    const certificates: Array<Record<string, unknown>> = [];
    for (const name of this.#plan.credentials.serving) {
      const c = this.store.serving(name);
      if (!c) {
        certificates.push({ ...this.store.status(name, 'serving') });
        continue;
      }
      certificates.push(this.#describeServing(c));
    }
    const validation: Array<Record<string, unknown>> = [];
    for (const name of this.#plan.credentials.validation) {
      const v = this.store.validation(name);
      validation.push(v ? describeValidation(v, at) : { ...this.store.status(name, 'validation') });
    }
    return {
      file: this.#options.file,
      loadedAt: this.#loadedAt.toISOString(),
      lastReload: this.#lastReload ? { ...this.#lastReload, at: this.#lastReload.at.toISOString() } : null,
      credentialSource: this.store.kind,
      listeners: [...this.#listeners].map(([port, l]) => ({ port, boundPort: l.bound, bind: l.listener.plan.bind, connections: l.listener.connectionCount, servers: l.listener.describe() })),
      certificates,
      validation,
    };
  }

  /** The verdict of the server port's validators on a verified client chain; undefined = nothing to wait for. */
  #admit(ctx: ConnectionContext): Promise<Admission> | undefined {
    const pipeline = this.#validation.get(ctx.listenerPort);
    if (!pipeline || !ctx.peer) return undefined;
    return pipeline.admit({ chain: ctx.peer.chain, sni: ctx.serverName, alpn: ctx.alpn, remoteAddress: ctx.remoteAddress });
  }

  #buildValidation(config: GatewayFileConfig): Map<number, PeerValidationPipeline> {
    const out = new Map<number, PeerValidationPipeline>();
    const ports = new Set(config.gateways.flatMap((g) => g.spec.servers.map((s) => s.port.number)));
    for (const port of ports) {
      const pipeline = buildPeerValidation(validationFor(config.options, port), {
        clock: this.#clock,
        metrics: this.#validationMetrics,
        ocsp: (o) => {
          const key = JSON.stringify(o);
          let v = this.#ocspValidators.get(key);
          if (!v) this.#ocspValidators.set(key, (v = new OcspValidator({ timeoutMs: o.timeout, onUnknown: o.onUnknown, onError: o.onError, clock: this.#clock })));
          return v;
        },
        onResult: (e) => {
          if (!e.result.allowed) {
            this.#accessLog?.info(
              { type: 'validation', port, validator: e.validator, reason: e.result.reason, detail: e.result.detail, remote: e.input.remoteAddress, sni: e.input.sni, durationMs: Math.round(e.durationMs * 1000) / 1000 },
              'client refused by a validator',
            );
          } else if (e.result.note) {
            this.#logger.warn({ port, validator: e.validator, detail: e.result.note }, 'validator failed; allowed because it fails open');
          }
        },
      });
      if (pipeline) out.set(port, pipeline);
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#validation.values()) p.close();
    if (this.#watcher) this.#watcher.close();
    if (this.#poll) clearInterval(this.#poll);
    if (this.#debounce) clearTimeout(this.#debounce);
    for (const l of this.#listeners.values()) await l.listener.close(false);
    await this.#handler?.close?.();
    for (const l of this.#listeners.values()) await l.listener.close(true);
    this.#listeners.clear();
    await this.#admin?.close();
    this.store.close();
    this.#secretSource?.close();
    this.#staples?.close();
  }

  #describeServing(c: ServingCredential): Record<string, unknown> {
    const leaf = c.chain[0]!;
    const st = this.stapling.decide(c);
    return {
      name: c.name,
      state: 'ready',
      source: c.source,
      serial: leaf.serial,
      subject: leaf.subject,
      notBefore: leaf.notBefore.toISOString(),
      notAfter: leaf.notAfter.toISOString(),
      chainLength: c.chain.length,
      staple: { policy: st.policy, state: st.state, action: st.action, reason: st.reason, ...(st.nextUpdate ? { nextUpdate: st.nextUpdate.toISOString() } : {}) },
    };
  }

  #accessLogFor(config: GatewayFileConfig): Logger | undefined {
    if (!config.options.accessLog.enabled) return undefined;
    return this.#options.accessLog ?? this.#logger;
  }

  async #openPort(p: PortPlan): Promise<void> {
    const listener = new PortListener(p, {
      store: this.store,
      stapling: this.stapling,
      metrics: this.metrics,
      logger: this.#logger,
      // The access log follows reloads: read at each use.
      accessLog: () => this.#accessLog,
      handler: { handle: (sock, ctx) => this.#handler.handle(sock, ctx) },
      handshakeTimeoutMs: this.#config.options.timeouts.handshake,
      connectTimeoutMs: this.#config.options.timeouts.upstreamConnect,
      idleTimeoutMs: this.#config.options.timeouts.idle,
      routeTcp: (server, sni) => this.#plan.routeTcp(server, sni),
      admit: this.#options.admit ? (server, ctx) => this.#options.admit!(server, ctx, this) : (_server, ctx) => this.#admit(ctx),
    });
    const bound = await listener.listen(this.#options.portOverrides?.[p.port] ?? p.port);
    this.#listeners.set(p.port, { listener, bound: bound.port });
    for (const s of listener.describe()) {
      for (const w of Array.isArray(s.warnings) ? s.warnings : []) this.#logger.warn({ port: p.port, server: s.id }, String(w));
      if (s.ready === false) this.#logger.warn({ port: p.port, server: s.id, problem: s.problem }, 'server has no usable certificate; its handshakes fail');
    }
  }

  #credentialsChanged(): void {
    for (const l of this.#listeners.values()) l.listener.rebuild();
    this.#refreshExpiry();
    for (const l of this.#listeners.values()) {
      for (const s of l.listener.describe()) {
        if (s.ready === false) this.#logger.warn({ server: s.id, problem: s.problem }, 'server has no usable certificate; its handshakes fail');
      }
    }
  }

  #refreshExpiry(): void {
    this.metrics.certificateExpiry.reset();
    for (const name of this.#plan.credentials.serving) {
      const c = this.store.serving(name);
      if (c) this.metrics.certificateExpiry.set({ credential: name, serial: c.chain[0]!.serial }, Math.floor(c.chain[0]!.notAfter.getTime() / 1000));
    }
  }

  #startWatching(): void {
    const schedule = () => {
      if (this.#debounce || this.#closed) return;
      this.#debounce = setTimeout(() => {
        this.#debounce = null;
        if (fileSignature(this.#options.file) !== this.#signature) void this.reload();
      }, 100);
      this.#debounce.unref();
    };
    try {
      // Watch the folder: editors and kubectl replace the file (rename), which a watch on the file itself loses.
      const dir = this.#options.file.includes('/') ? this.#options.file.slice(0, this.#options.file.lastIndexOf('/')) || '/' : '.';
      this.#watcher = watch(dir, { persistent: false }, schedule);
      this.#watcher.on('error', () => undefined);
    } catch {
      // The poll covers it.
    }
    this.#poll = setInterval(schedule, this.#options.pollIntervalMs ?? 1000);
    this.#poll.unref();
  }
}

function describeValidation(v: ValidationCredential, at: Date): Record<string, unknown> {
  return {
    name: v.name,
    state: 'ready',
    source: v.source,
    cas: v.cas.map((c) => ({ subject: c.subject, serial: c.serial, notAfter: c.notAfter.toISOString() })),
    crls: v.crls.map((c) => ({ issuer: c.issuer, thisUpdate: c.thisUpdate.toISOString(), nextUpdate: c.nextUpdate?.toISOString() ?? null, entries: c.entries.length, current: c.isCurrentAt(at) })),
  };
}
