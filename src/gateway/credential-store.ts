// Where the gateway's certificates come from: a secrets folder (src/secrets SecretSource, watched) or an SDS server
// (src/sds SdsClient, e.g. `meshcert serve` or a workload agent's socket). Both give the same two shapes: a serving
// credential (chain, key, staple, declared stapling policy) and a validation credential (CA certificates and CRLs).
// Names are Istio's: credentialName NAME serves secret NAME and validates clients with NAME-cacert (or NAME's own
// ca.crt); ISTIO_MUTUAL serves `default` and validates with `ROOTCA`. A change is announced to subscribers, who
// rebuild their TLS contexts for new handshakes; handshakes in progress and established connections are untouched.
import type { KeyObject } from 'node:crypto';
import { silentLogger, type Logger } from '../core/index.js';
import type { Certificate, Crl } from '../pki/index.js';
import { KUBERNETES_RESOURCE_PREFIX, type GatewaySecret, type OcspPolicy, type SecretSource } from '../secrets/index.js';
import type { ClientSecret, SdsClient } from '../sds/index.js';

/** The certificate a server presents. */
export interface ServingCredential {
  name: string;
  /** Where it came from, for logs and /config_dump: "secrets: FILE" or "sds: kubernetes://NAME (version V)". */
  source: string;
  /** Leaf first. */
  chain: Certificate[];
  privateKey: KeyObject;
  /** What Node's `cert` gets: the chain as PEM (the leaf's issuer must be in it for Node to look up a staple). */
  certPem: string;
  keyPem: string;
  staple: Buffer | null;
  /** The leaf's issuer (from the chain or the CA side), to check the staple against; null when unknown. */
  issuer: Certificate | null;
  /** The stapling policy declared for it (annotation or configuration); null = none (OPTIONAL). */
  declaredPolicy: OcspPolicy | null;
  /** Changes whenever anything of it changes. */
  version: string;
}

/** The CAs (and CRLs) client certificates are verified against. */
export interface ValidationCredential {
  name: string;
  source: string;
  cas: Certificate[];
  caPem: string;
  crls: Crl[];
  /** Every CRL as `X509 CRL` PEM, or null. */
  crlPem: string | null;
  version: string;
}

/** The state of one name, for /config_dump. */
export interface CredentialStatus {
  name: string;
  kind: 'serving' | 'validation';
  state: 'ready' | 'missing' | 'refused';
  reason?: string;
}

export interface CredentialStore {
  readonly kind: 'secrets' | 'sds';
  serving(name: string): ServingCredential | undefined;
  validation(name: string): ValidationCredential | undefined;
  /** The names the running config uses (an SDS store subscribes to exactly these). */
  want(names: { serving: readonly string[]; validation: readonly string[] }): void;
  /** Why a name has nothing to serve (missing, refused version), for logs and /config_dump. */
  status(name: string, kind: 'serving' | 'validation'): CredentialStatus;
  onChange(listener: () => void): () => void;
  close(): void;
}

/** The serving name ISTIO_MUTUAL servers use, and the validation name that goes with it (Istio's SDS names). */
export const WORKLOAD_CERT = 'default';
export const ROOT_CA = 'ROOTCA';

// ---------------------------------------------------------------------------------------------------------------

function servingFromSecret(secret: GatewaySecret): ServingCredential | undefined {
  const tls = secret.tls;
  if (!tls) return undefined;
  const inChain = tls.issuer ? tls.chain.some((c) => c.der.equals(tls.issuer!.der)) : true;
  return {
    name: secret.name,
    source: `secrets: ${secret.source}`,
    chain: tls.chain,
    privateKey: tls.privateKey,
    // Node finds the issuer for its OCSPRequest event only in the served chain: add it when it was only in ca.crt.
    certPem: inChain ? tls.chainPem : tls.chainPem + tls.issuer!.pem,
    keyPem: tls.keyPem,
    staple: tls.staple,
    issuer: tls.issuer,
    declaredPolicy: secret.declaredPolicy,
    version: secret.digest,
  };
}

function validationFromSecret(secret: GatewaySecret, name: string): ValidationCredential | undefined {
  const ca = secret.ca;
  if (!ca) return undefined;
  return { name, source: `secrets: ${secret.source} (${ca.caKey})`, cas: ca.certs, caPem: ca.pem, crls: ca.crls, crlPem: ca.crlPem, version: `${secret.digest}:ca` };
}

/**
 * Credentials from a secrets folder. `default` and `ROOTCA` (ISTIO_MUTUAL) are the secret named `default`: its
 * certificate, and its ca.crt (or a `default-cacert` secret) as the trust bundle.
 */
export class SecretsCredentialStore implements CredentialStore {
  readonly kind = 'secrets' as const;
  readonly #source: SecretSource;
  readonly #listeners = new Set<() => void>();
  readonly #serving = new Map<string, ServingCredential>();
  readonly #validation = new Map<string, ValidationCredential>();
  readonly #unsubscribe: () => void;

  constructor(source: SecretSource) {
    this.#source = source;
    // The caches are checked by version on every lookup: an unchanged secret keeps its object (and the TLS server
    // built for it, with its session ticket keys) across changes to other secrets.
    this.#unsubscribe = source.onChange(() => {
      for (const l of [...this.#listeners]) l();
    });
  }

  get source(): SecretSource {
    return this.#source;
  }

  serving(name: string): ServingCredential | undefined {
    const hit = this.#serving.get(name);
    const served = this.#source.get(name)?.served;
    if (!served) return undefined;
    if (hit && hit.version === served.secret.digest) return hit;
    const cred = servingFromSecret(served.secret);
    if (cred) this.#serving.set(name, cred);
    return cred;
  }

  validation(name: string): ValidationCredential | undefined {
    const base = name === ROOT_CA ? WORKLOAD_CERT : name;
    const hit = this.#validation.get(name);
    const own = this.#source.get(`${base}-cacert`)?.served?.secret ?? this.#source.get(base)?.served?.secret;
    if (!own) return undefined;
    if (hit && hit.version === `${own.digest}:ca`) return hit;
    const cred = validationFromSecret(own, name);
    if (cred) this.#validation.set(name, cred);
    return cred;
  }

  want(): void {
    // Every secret of the folder is read anyway.
  }

  status(name: string, kind: 'serving' | 'validation'): CredentialStatus {
    const ok = kind === 'serving' ? this.serving(name) : this.validation(name);
    if (ok) return { name, kind, state: 'ready' };
    const base = kind === 'validation' && name === ROOT_CA ? WORKLOAD_CERT : name;
    const entry = this.#source.get(base);
    if (entry?.rejected && !entry.served) {
      const why = entry.rejected.problems.filter((p) => p.severity === 'error').map((p) => p.message).join('; ');
      return { name, kind, state: 'refused', reason: why || 'invalid' };
    }
    if (entry?.served) {
      return { name, kind, state: 'missing', reason: kind === 'serving' ? `secret ${base} has no certificate and key` : `secret ${base} has no ca.crt (or cacert) and there is no ${base}-cacert` };
    }
    return { name, kind, state: 'missing', reason: `no secret ${base} in the secrets folder` };
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#unsubscribe();
    this.#listeners.clear();
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** The SDS resource name for a credential: `kubernetes://NAME`, `kubernetes://NAME-cacert`, `default`, `ROOTCA`. */
export function sdsResourceName(name: string, kind: 'serving' | 'validation'): string {
  if (name === WORKLOAD_CERT && kind === 'serving') return WORKLOAD_CERT;
  if (name === ROOT_CA && kind === 'validation') return ROOT_CA;
  return kind === 'serving' ? `${KUBERNETES_RESOURCE_PREFIX}${name}` : `${KUBERNETES_RESOURCE_PREFIX}${name}-cacert`;
}

export interface SdsCredentialStoreOptions {
  /** Stapling policy by credential name: SDS carries no annotation, so without this a staple is OPTIONAL. */
  policies?: Readonly<Record<string, OcspPolicy>>;
  logger?: Logger;
}

/**
 * Credentials over SDS. The client keeps the last good secret of each name when the server goes away and
 * reconnects with backoff (src/sds SdsClient), so the gateway goes on serving its last good certificates.
 */
export class SdsCredentialStore implements CredentialStore {
  readonly kind = 'sds' as const;
  readonly #client: SdsClient;
  readonly #policies: Readonly<Record<string, OcspPolicy>>;
  readonly #logger: Logger;
  readonly #listeners = new Set<() => void>();
  readonly #serving = new Map<string, ServingCredential>();
  readonly #validation = new Map<string, ValidationCredential>();
  #wanted = new Set<string>();

  constructor(client: SdsClient, options: SdsCredentialStoreOptions = {}) {
    this.#client = client;
    this.#policies = options.policies ?? {};
    this.#logger = options.logger ?? silentLogger;
    client.on('secret', (s: ClientSecret) => {
      this.#logger.info({ resource: s.name, version: s.version }, 'SDS secret received');
      for (const l of [...this.#listeners]) l();
    });
    client.on('disconnected', (e: { details: string; retryInMs: number }) => {
      this.#logger.warn({ details: e.details, retryInMs: e.retryInMs }, 'SDS server gone; serving the last good certificates, reconnecting');
    });
  }

  get client(): SdsClient {
    return this.#client;
  }

  serving(name: string): ServingCredential | undefined {
    const res = sdsResourceName(name, 'serving');
    const s = this.#client.get(res);
    if (!s || s.payload.kind !== 'tlsCertificate' || !s.certificates || !s.privateKey) return undefined;
    const hit = this.#serving.get(name);
    if (hit && hit.version === s.digest) return hit;
    const chain = s.certificates;
    const leaf = chain[0]!;
    let issuer = chain.slice(1).find((c) => leaf.isIssuedBy(c)) ?? null;
    if (!issuer) {
      // The issuer may be the root of the validation side (a leaf issued straight by the root).
      const v = this.#client.get(name === WORKLOAD_CERT ? ROOT_CA : sdsResourceName(name, 'validation'));
      issuer = v?.caCertificates?.find((c) => leaf.isIssuedBy(c)) ?? null;
    }
    const chainPem = chain.map((c) => c.pem).join('');
    const cred: ServingCredential = {
      name,
      source: `sds: ${res} (version ${s.version})`,
      chain,
      privateKey: s.privateKey,
      certPem: issuer && !chain.some((c) => c.der.equals(issuer.der)) ? chainPem + issuer.pem : chainPem,
      keyPem: s.payload.privateKey,
      staple: s.payload.ocspStaple ?? null,
      issuer,
      declaredPolicy: this.#policies[name] ?? null,
      version: s.digest,
    };
    this.#serving.set(name, cred);
    return cred;
  }

  validation(name: string): ValidationCredential | undefined {
    const res = sdsResourceName(name, 'validation');
    const s = this.#client.get(res);
    if (!s || s.payload.kind !== 'validationContext' || !s.caCertificates) return undefined;
    const hit = this.#validation.get(name);
    if (hit && hit.version === s.digest) return hit;
    const crls = s.crls ?? [];
    const cred: ValidationCredential = {
      name,
      source: `sds: ${res} (version ${s.version})`,
      cas: s.caCertificates,
      caPem: s.caCertificates.map((c) => c.pem).join(''),
      crls,
      crlPem: crls.length ? crls.map((c) => c.pem).join('') : null,
      version: s.digest,
    };
    this.#validation.set(name, cred);
    return cred;
  }

  want(names: { serving: readonly string[]; validation: readonly string[] }): void {
    const wanted = new Set([...names.serving.map((n) => sdsResourceName(n, 'serving')), ...names.validation.map((n) => sdsResourceName(n, 'validation'))]);
    if (wanted.size === this.#wanted.size && [...wanted].every((n) => this.#wanted.has(n))) return;
    this.#wanted = wanted;
    this.#client.setNames([...wanted].sort());
  }

  status(name: string, kind: 'serving' | 'validation'): CredentialStatus {
    const ok = kind === 'serving' ? this.serving(name) : this.validation(name);
    if (ok) return { name, kind, state: 'ready' };
    const res = sdsResourceName(name, kind);
    return { name, kind, state: 'missing', reason: `no ${res} from the SDS server yet${this.#client.connected ? '' : ' (not connected)'}` };
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#listeners.clear();
    this.#client.close();
  }
}

