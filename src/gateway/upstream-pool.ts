import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls, { type PeerCertificate } from 'node:tls';
import { Certificate } from '../pki/index.js';
import { ProxyErrorReason, UpstreamError } from './upstream-error.js';

/** Upstream TLS material for a DestinationRule `credentialName` (the listener side supplies it). */
export interface UpstreamCredential {
  /** Client key and chain for MUTUAL; absent for SIMPLE (CA only). */
  key?: string | Buffer;
  certChain?: string | Buffer;
  /** CA to verify the upstream; absent = Node's default CA store. */
  ca?: string | Buffer;
  crl?: string | Buffer;
}
/** The gateway's own workload identity for ISTIO_MUTUAL (SDS `default` and `ROOTCA`). */
export interface IstioCredential {
  key: string | Buffer;
  certChain: string | Buffer;
  trustBundle: string | Buffer;
}
export type CredentialLookup = (credentialName: string) => UpstreamCredential | undefined;
export type IstioCredentialLookup = () => IstioCredential | undefined;

/** DestinationRule `tls` as far as origination needs it (Istio's ClientTLSSettings, validated). */
export interface OriginationTls {
  mode: 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  credentialName?: string | undefined;
  clientCertificate?: string | undefined;
  privateKey?: string | undefined;
  caCertificates?: string | undefined;
  caCrl?: string | undefined;
  sni?: string | undefined;
  subjectAltNames?: string[] | undefined;
  insecureSkipVerify?: boolean | undefined;
}

/** How to reach one destination: everything fixed at config time. */
export interface UpstreamPlan {
  /** The destination host (default SNI and SAN to verify). */
  destination: string;
  address: { host: string; port: number };
  /** `host:port`, for messages and logs. */
  label: string;
  tls: OriginationTls | undefined;
  /** HTTP/2 upstream: always, never (gRPC still goes over HTTP/2), or as the client spoke. */
  http2: 'always' | 'never' | 'client';
  connectTimeoutMs: number;
  /** Idle keep-alive connections are closed after this. */
  idleTimeoutMs: number;
  /** Connections to this destination at most (more requests wait); undefined = no limit. */
  maxConnections: number | undefined;
  /** Circuit breakers (connectionPool.http): requests in flight, requests waiting for a connection, retries in flight. */
  maxRequests?: number | undefined;
  maxPendingRequests?: number | undefined;
  maxRetries?: number | undefined;
  /** Requests (HTTP/1.1) or streams (HTTP/2) per upstream connection, after which it is closed; undefined = no limit. */
  maxRequestsPerConnection?: number | undefined;
  /** For ISTIO_MUTUAL without subjectAltNames: the peer must have a SPIFFE ID in this trust domain. */
  trustDomain: string;
}

export interface UpstreamPoolOptions {
  credentials?: CredentialLookup | undefined;
  istioCredentials?: IstioCredentialLookup | undefined;
}

interface AgentEntry {
  agent: http.Agent;
  secure: boolean;
  /** The credential objects the agent was built with: a rotation replaces the agent. */
  creds: unknown;
}

interface SessionEntry {
  session: http2.ClientHttp2Session;
  creds: unknown;
  connected: boolean;
  /** Took its last stream (maxRequestsPerConnection): closes itself once that stream is under way; never handed out. */
  draining?: boolean;
}

/**
 * Keep-alive connections to upstreams: one http(s).Agent per (address, TLS settings, credentials) for HTTP/1.1 and
 * one HTTP/2 session per the same key. TLS origination follows the DestinationRule: SIMPLE (verify the upstream),
 * MUTUAL (and present a client certificate), ISTIO_MUTUAL (the gateway's workload identity and trust bundle). The
 * upstream certificate is checked against `subjectAltNames` (DNS, URI — SPIFFE IDs too —, IP, exact; a wildcard
 * DNS SAN in the certificate matches one label), or else against the SNI / destination host as a DNS name.
 */
export class UpstreamPool {
  readonly #agents = new Map<string, AgentEntry>();
  readonly #sessions = new Map<string, SessionEntry>();
  readonly #files = new Map<string, Buffer>();
  #options: UpstreamPoolOptions;

  constructor(options: UpstreamPoolOptions = {}) {
    this.#options = options;
  }

  /** The HTTP/1.1 agent for a plan (throws UpstreamError when TLS credentials are missing). */
  agent(plan: UpstreamPlan, key: string): AgentEntry {
    const creds = this.#credentials(plan);
    let entry = this.#agents.get(key);
    if (entry && entry.creds === creds) return entry;
    if (entry) retireAgent(entry.agent, plan.idleTimeoutMs);
    const common: http.AgentOptions = {
      keepAlive: true,
      timeout: plan.idleTimeoutMs,
      scheduling: 'lifo',
      ...(plan.maxConnections !== undefined ? { maxSockets: plan.maxConnections } : {}),
    };
    if (plan.tls && plan.tls.mode !== 'DISABLE') {
      entry = { agent: new https.Agent({ ...common, ...this.#tlsOptions(plan, creds, ['http/1.1']) }), secure: true, creds };
    } else {
      entry = { agent: new http.Agent(common), secure: false, creds };
    }
    this.#agents.set(key, entry);
    return entry;
  }

  /** The HTTP/2 session for a plan, connecting if needed. `connected()` tells a connect failure from a reset. */
  session(plan: UpstreamPlan, key: string): SessionEntry {
    const creds = this.#credentials(plan);
    const existing = this.#sessions.get(key);
    if (existing && existing.creds === creds && !existing.draining && !existing.session.closed && !existing.session.destroyed) return existing;
    if (existing && !existing.draining) existing.session.close();
    const secure = plan.tls !== undefined && plan.tls.mode !== 'DISABLE';
    const tlsOptions = secure ? this.#tlsOptions(plan, creds, ['h2']) : undefined;
    const authority = `${secure ? 'https' : 'http'}://${plan.address.host.includes(':') ? `[${plan.address.host}]` : plan.address.host}:${plan.address.port}`;
    const session = http2.connect(authority, {
      createConnection: () =>
        tlsOptions
          ? tls.connect({ ...tlsOptions, host: plan.address.host, port: plan.address.port })
          : net.connect({ host: plan.address.host, port: plan.address.port }),
    });
    const entry: SessionEntry = { session, creds, connected: false };
    const timer = setTimeout(() => {
      if (!entry.connected) {
        session.destroy(Object.assign(new Error(`connect timeout after ${plan.connectTimeoutMs} ms`), { code: 'UPSTREAM_CONNECT_TIMEOUT' }));
      }
    }, plan.connectTimeoutMs);
    timer.unref();
    session.once('connect', () => {
      entry.connected = true;
      clearTimeout(timer);
    });
    const drop = () => {
      clearTimeout(timer);
      if (this.#sessions.get(key) === entry) this.#sessions.delete(key);
    };
    session.on('error', drop); // each stream reports the error to its request
    session.on('goaway', drop);
    session.on('close', drop);
    if (plan.idleTimeoutMs > 0) session.setTimeout(plan.idleTimeoutMs, () => session.close());
    session.unref();
    this.#sessions.set(key, entry);
    return entry;
  }

  /** Closes idle connections and sessions (in-flight streams finish); no new ones after `destroy`. */
  close(): void {
    for (const e of this.#agents.values()) e.agent.destroy();
    for (const e of this.#sessions.values()) e.session.close();
    this.#agents.clear();
    this.#sessions.clear();
  }

  /** Keeps the pools whose keys are still in use, closes the others (a config reload re-reads TLS files). */
  retain(keys: ReadonlySet<string>): void {
    this.#files.clear();
    for (const [k, e] of this.#agents) {
      if (!keys.has(k)) {
        retireAgent(e.agent, 0);
        this.#agents.delete(k);
      }
    }
    for (const [k, e] of this.#sessions) {
      if (!keys.has(k)) {
        e.session.close();
        this.#sessions.delete(k);
      }
    }
  }

  setCredentials(options: UpstreamPoolOptions): void {
    this.#options = options;
  }

  #credentials(plan: UpstreamPlan): unknown {
    const t = plan.tls;
    if (!t || t.mode === 'DISABLE') return null;
    if (t.mode === 'ISTIO_MUTUAL') {
      const c = this.#options.istioCredentials?.();
      if (!c) {
        throw new UpstreamError(503, ProxyErrorReason.TLS_CREDENTIALS, `upstream ${plan.label}: ISTIO_MUTUAL needs the gateway's workload certificate (SDS default and ROOTCA), which is not available`);
      }
      return c;
    }
    if (t.credentialName !== undefined) {
      const c = this.#options.credentials?.(t.credentialName);
      if (!c) {
        throw new UpstreamError(503, ProxyErrorReason.TLS_CREDENTIALS, `upstream ${plan.label}: DestinationRule credentialName ${t.credentialName} is not available`);
      }
      if (t.mode === 'MUTUAL' && (c.key === undefined || c.certChain === undefined)) {
        throw new UpstreamError(503, ProxyErrorReason.TLS_CREDENTIALS, `upstream ${plan.label}: credential ${t.credentialName} has no client certificate and key for MUTUAL`);
      }
      return c;
    }
    return plan.tls; // file paths or the default CA store: fixed per plan
  }

  #file(path: string, plan: UpstreamPlan): Buffer {
    let b = this.#files.get(path);
    if (!b) {
      try {
        b = readFileSync(path);
      } catch (err) {
        throw new UpstreamError(503, ProxyErrorReason.TLS_CREDENTIALS, `upstream ${plan.label}: cannot read ${path}: ${(err as Error).message}`);
      }
      this.#files.set(path, b);
    }
    return b;
  }

  #tlsOptions(plan: UpstreamPlan, creds: unknown, alpn: string[]): tls.ConnectionOptions {
    const t = plan.tls!;
    const servername = t.sni ?? plan.destination;
    const o: tls.ConnectionOptions = { ALPNProtocols: alpn };
    // An empty servername sends no SNI (an IP); unset, Node would take it from the Host header.
    o.servername = net.isIP(servername) === 0 ? servername : '';
    if (t.mode === 'ISTIO_MUTUAL') {
      const c = creds as IstioCredential;
      o.key = c.key;
      o.cert = c.certChain;
      o.ca = c.trustBundle;
    } else if (t.credentialName !== undefined) {
      const c = creds as UpstreamCredential;
      if (t.mode === 'MUTUAL') {
        o.key = c.key;
        o.cert = c.certChain;
      }
      if (c.ca !== undefined) o.ca = c.ca;
      if (c.crl !== undefined) o.crl = c.crl;
    } else {
      if (t.clientCertificate !== undefined && t.privateKey !== undefined) {
        o.cert = this.#file(t.clientCertificate, plan);
        o.key = this.#file(t.privateKey, plan);
      }
      if (t.caCertificates !== undefined) o.ca = this.#file(t.caCertificates, plan);
      if (t.caCrl !== undefined) o.crl = this.#file(t.caCrl, plan);
    }
    if (t.insecureSkipVerify) {
      o.rejectUnauthorized = false;
      o.checkServerIdentity = () => undefined;
      return o;
    }
    o.rejectUnauthorized = true;
    const sans = t.subjectAltNames;
    const spiffeDomain = t.mode === 'ISTIO_MUTUAL' && !sans?.length ? `spiffe://${plan.trustDomain}/` : undefined;
    o.checkServerIdentity = (_host: string, peer: PeerCertificate) => verifyUpstreamIdentity(peer, plan.label, servername, sans, spiffeDomain);
    return o;
  }
}

/** Lets an agent's in-flight requests finish; its idle sockets close now and busy ones when released. */
function retireAgent(agent: http.Agent, _graceMs: number): void {
  const a = agent as unknown as { keepAlive: boolean; options: { keepAlive?: boolean } };
  a.keepAlive = false;
  a.options.keepAlive = false;
  for (const list of Object.values(agent.freeSockets)) for (const s of list ?? []) s.destroy();
}

function sanError(label: string, message: string): Error {
  return Object.assign(new Error(`upstream ${label}: certificate ${message}`), { code: 'ERR_MESHCERT_UPSTREAM_SAN' });
}

function dnsMatches(certName: string, wanted: string): boolean {
  const c = certName.toLowerCase();
  const w = wanted.toLowerCase();
  if (c === w) return true;
  if (c.startsWith('*.')) {
    const dot = w.indexOf('.');
    return dot > 0 && w.slice(dot) === c.slice(1);
  }
  return false;
}

/**
 * Checks the upstream's leaf against the expected SANs (any one suffices), or the SPIFFE trust domain, or else
 * the SNI as a host name (Node's own check). Returns an Error (the handshake fails) or undefined.
 */
export function verifyUpstreamIdentity(
  peer: PeerCertificate,
  label: string,
  servername: string,
  subjectAltNames: readonly string[] | undefined,
  spiffeTrustDomainPrefix: string | undefined,
): Error | undefined {
  if (!subjectAltNames?.length && spiffeTrustDomainPrefix === undefined) {
    const err = tls.checkServerIdentity(servername, peer);
    return err ? sanError(label, `does not match the host ${servername}: ${err.message}`) : undefined;
  }
  let cert: Certificate;
  try {
    cert = Certificate.fromDer(peer.raw, `certificate of upstream ${label}`);
  } catch (err) {
    return sanError(label, `cannot be parsed: ${(err as Error).message}`);
  }
  const s = cert.sans;
  if (spiffeTrustDomainPrefix !== undefined) {
    if (s.uri.some((u) => u.startsWith(spiffeTrustDomainPrefix))) return undefined;
    return sanError(label, `has no SPIFFE ID in ${spiffeTrustDomainPrefix}* (URI SANs: ${s.uri.join(', ') || 'none'})`);
  }
  for (const want of subjectAltNames!) {
    if (s.uri.includes(want) || s.ip.includes(want) || s.email.includes(want) || s.dns.some((d) => dnsMatches(d, want))) return undefined;
  }
  const have = [...s.dns.map((d) => `DNS:${d}`), ...s.uri.map((u) => `URI:${u}`), ...s.ip.map((i) => `IP:${i}`)];
  return sanError(label, `SANs [${have.join(', ')}] match none of subjectAltNames [${subjectAltNames!.join(', ')}]`);
}
