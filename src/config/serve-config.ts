import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';
import { configError } from './config-errors.js';
import { duration, httpUrl, listenAddress } from './fields.js';
import { sdsConfigSchema } from './sds-config.js';

const jwtIssuer = z
  .strictObject({
    issuer: z.string().min(1),
    audiences: z.array(z.string().min(1)).min(1),
    jwksFile: z.string().min(1).optional(),
    publicKeyFiles: z.array(z.string().min(1)).min(1).optional(),
    /** The trust domain its service accounts map into: trustDomain (the default) or one of additionalTrustDomains. */
    trustDomain: z.string().min(1).optional(),
  })
  .refine((j) => (j.jwksFile === undefined) !== (j.publicKeyFiles === undefined), {
    message: 'give exactly one of jwksFile or publicKeyFiles',
  });

const dnsGrant = z.strictObject({
  /** A SPIFFE ID, or a pattern with `*` as a whole last path segment or suffix (spiffe://td/ns/web/sa/*). */
  identity: z.string().min(1),
  dnsNames: z.array(z.string().min(1)).min(1),
});

/** SPIFFE trust domain names: lowercase letters, digits, ".", "-", "_" (config imports only core: checked here too). */
const TRUST_DOMAIN_NAME = /^[a-z0-9._-]{1,255}$/;

/** A trust domain besides the main one, signed for by its own CA in its own folder (Istio's cacerts file names). */
const additionalTrustDomain = z.strictObject({
  name: z.string().regex(TRUST_DOMAIN_NAME, 'not a SPIFFE trust domain name: use lowercase letters, digits, ".", "-" and "_" (e.g. partner.example)'),
  /** Absent: DATA-DIR/trust-domains/<name>. A folder without a CA gets a new self-signed root on first start. */
  caDir: z.string().min(1).optional(),
});

/** The `meshcert serve` configuration file. Sections that are absent are off. */
export const serveConfigSchema = z.strictObject({
  trustDomain: z.string().min(1).default('cluster.local'),
  /**
   * More trust domains, each with a signing CA of its own: a workload's certificate is signed by the CA of its
   * identity's trust domain, and its chain ends with that trust domain's roots only (no federation).
   */
  additionalTrustDomains: z.array(additionalTrustDomain).default([]),
  grpc: z
    .strictObject({
      listen: listenAddress,
      dnsNames: z.array(z.string().min(1)).min(1).default(['istiod.istio-system.svc', 'localhost']),
      /** Lifetime of the gRPC serving certificate; renewed at two thirds. */
      certificateTtl: duration.prefault('24h'),
      maxCsrBytes: z.number().int().min(512).max(1_048_576).default(16_384),
      /** Calls served at once at most; more are answered RESOURCE_EXHAUSTED before any work (load shedding). */
      maxInFlight: z.number().int().min(1).max(1_000_000).default(1024),
    })
    .optional(),
  http: z
    .strictObject({
      listen: listenAddress,
      /**
       * Base URL of this listener as clients reach it: written into issued certificates as the OCSP URL
       * (PUBLIC/ocsp) and the CRL distribution point (PUBLIC/crl), where it stays for their whole life.
       */
      publicUrl: httpUrl.optional(),
    })
    .optional(),
  /** The OCSP responder on the http listener (used only when http is on). */
  ocsp: z
    .strictObject({
      /** nextUpdate − thisUpdate of each response; responses are re-signed at half of it. */
      responseValidity: duration.prefault('1h'),
      /** Lifetime of the delegated OCSP signer certificate; renewed at half of it. */
      signerTtl: duration.prefault('7d'),
      /** Larger POST bodies are refused (HTTP 413, malformedRequest) without being read. */
      maxRequestBytes: z.number().int().min(1024).max(1_048_576).default(65_536),
      /** Cached signed responses kept at most. */
      cacheEntries: z.number().int().min(100).max(10_000_000).default(50_000),
    })
    .prefault({}),
  /** The CRL endpoint on the http listener (used only when http is on). */
  crl: z
    .strictObject({
      /** nextUpdate − thisUpdate; a new CRL is made at half of it and on every revocation. */
      validity: duration.prefault('24h'),
    })
    .prefault({}),
  /** The admin API (revocation, certificate list): its own listener, bearer token, never the public one. */
  admin: z
    .strictObject({
      listen: listenAddress.prefault('127.0.0.1:15016'),
      /** File holding the bearer token (trimmed; re-read when it changes). Absent: DATA-DIR/admin-token, made on first start. */
      tokenFile: z.string().min(1).optional(),
    })
    .optional(),
  issuance: z
    .strictObject({
      defaultTtl: duration.prefault('24h'),
      maxTtl: duration.prefault('48h'),
      /** Clock-skew allowance: notBefore is this much before the time of issuance. */
      backdate: duration.prefault('60s'),
      dnsGrants: z.array(dnsGrant).default([]),
    })
    .prefault({}),
  auth: z
    .strictObject({
      jwt: z.array(jwtIssuer).default([]),
      bootstrapTokens: z.string().min(1).optional(),
      clientCertificates: z.boolean().default(false),
      /** Allowed clock skew for token times. */
      clockSkew: duration.prefault('60s'),
    })
    .optional(),
  rateLimit: z
    .strictObject({
      /** Sustained CSRs per second per identity, and the burst above it. */
      perIdentityPerSecond: z.number().positive().default(10),
      burst: z.number().int().positive().default(50),
    })
    .optional(),
  /**
   * Envoy SDS for gateway secrets (see sds-config.ts). With no grpc, http or admin section, SDS runs alone: no CA
   * is created or loaded in the data dir, and `listen` then needs certFile/keyFile.
   */
  sds: sdsConfigSchema.optional(),
}).superRefine((cfg, ctx) => {
  checkTrustDomains(cfg, (path, message) => ctx.addIssue({ code: 'custom', path, message }));
});

/**
 * The rules between trust domain settings: no trust domain twice (nor the main one among the others), no CA folder
 * shared, JWT issuers mapped only into trust domains signed for here. Each problem names its field.
 */
function checkTrustDomains(
  cfg: { trustDomain: string; additionalTrustDomains: Array<{ name: string; caDir?: string | undefined }>; auth?: { jwt: Array<{ trustDomain?: string | undefined }> } | undefined },
  problem: (path: Array<string | number>, message: string) => void,
): void {
  const names = new Map<string, number>();
  const dirs = new Map<string, number>();
  cfg.additionalTrustDomains.forEach((td, i) => {
    if (td.name === cfg.trustDomain) {
      problem(['additionalTrustDomains', i, 'name'], `"${td.name}" is the main trustDomain; list only the other trust domains here`);
    } else if (names.has(td.name)) {
      problem(['additionalTrustDomains', i, 'name'], `"${td.name}" is listed twice (also additionalTrustDomains[${names.get(td.name)}])`);
    } else names.set(td.name, i);
    if (td.caDir !== undefined) {
      const dir = resolve(td.caDir);
      const other = dirs.get(dir);
      if (other !== undefined) {
        problem(['additionalTrustDomains', i, 'caDir'], `${td.caDir} is also the folder of additionalTrustDomains[${other}]; each trust domain needs a CA folder of its own`);
      } else dirs.set(dir, i);
    }
  });
  const known = [cfg.trustDomain, ...names.keys()];
  cfg.auth?.jwt.forEach((j, i) => {
    if (j.trustDomain !== undefined && !known.includes(j.trustDomain)) {
      problem(
        ['auth', 'jwt', i, 'trustDomain'],
        `"${j.trustDomain}" is not a trust domain of this server: use trustDomain ("${cfg.trustDomain}")${names.size ? ` or one of additionalTrustDomains (${[...names.keys()].map((n) => `"${n}"`).join(', ')})` : ', or add it to additionalTrustDomains'}`,
      );
    }
  });
}

export type ServeConfig = z.output<typeof serveConfigSchema>;

/**
 * Whether `meshcert serve` creates (on first start) and loads the mesh CA for this config: yes whenever grpc, http
 * or admin is on, and also when sds is off (as before SDS existed, a config with no section still makes the CA).
 * Only a config whose sole endpoint is `sds` runs without a CA.
 */
export function serveRunsCa(config: Pick<ServeConfig, 'grpc' | 'http' | 'admin' | 'sds'>): boolean {
  return !config.sds || config.grpc !== undefined || config.http !== undefined || config.admin !== undefined;
}

/** What `meshcert serve` runs without --config: everything on, on loopback, Istio's ports. */
export function defaultServeConfig(): ServeConfig {
  return serveConfigSchema.parse({
    trustDomain: 'cluster.local',
    grpc: { listen: '127.0.0.1:15012' },
    http: { listen: '127.0.0.1:15014', publicUrl: 'http://127.0.0.1:15014' },
    auth: { clientCertificates: true },
    rateLimit: {},
    admin: { listen: '127.0.0.1:15016' },
  });
}

/** Parses YAML text (one document) into a validated config; errors name the file and every field path at fault. */
export function parseServeConfig(text: string, file = 'config'): ServeConfig {
  let raw: unknown;
  try {
    const docs = parseAllDocuments(text);
    if (Array.isArray(docs) && docs.length > 1) {
      throw new Error('expected one YAML document, found several');
    }
    const doc = Array.isArray(docs) ? docs[0] : docs;
    if (!doc) throw new Error('the file is empty');
    if ('errors' in doc && doc.errors.length) throw new Error(doc.errors.map((e) => e.message).join('; '));
    raw = doc.toJS();
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `${file}: not valid YAML: ${describeError(err)}`, { subject: file, cause: err });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new MeshError(ErrorCodes.CONFIG, `${file}: expected a mapping of settings at the top level`, { subject: file });
  }
  const res = serveConfigSchema.safeParse(raw);
  if (!res.success) throw configError(file, res.error);
  const cfg = res.data;
  if (cfg.issuance.defaultTtl > cfg.issuance.maxTtl) {
    throw new MeshError(ErrorCodes.CONFIG, `${file}: issuance.defaultTtl is longer than issuance.maxTtl`, { subject: file });
  }
  // The signer is renewed at half its life: a response signed just before must still fit in what is left.
  if (cfg.ocsp.responseValidity > cfg.ocsp.signerTtl / 2) {
    throw new MeshError(ErrorCodes.CONFIG, `${file}: ocsp.responseValidity must be at most half of ocsp.signerTtl`, { subject: file });
  }
  if (cfg.sds?.listen && !cfg.sds.certFile && !serveRunsCa(cfg)) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `${file}: sds.listen needs sds.certFile and sds.keyFile when SDS runs alone (no grpc, http or admin section, so no mesh CA to issue its certificate); or use only sds.uds`,
      { subject: 'sds.listen' },
    );
  }
  if (cfg.additionalTrustDomains.length && !serveRunsCa(cfg)) {
    throw new MeshError(
      ErrorCodes.CONFIG,
      `${file}: additionalTrustDomains needs a mesh CA, and a config with only an sds section runs none; add a grpc, http or admin section`,
      { subject: 'additionalTrustDomains' },
    );
  }
  const taken = [
    ['grpc.listen', cfg.grpc?.listen],
    ['http.listen', cfg.http?.listen],
  ] as const;
  for (const [name, addr] of taken) {
    const admin = cfg.admin?.listen;
    if (admin && addr && admin.port !== 0 && admin.port === addr.port && admin.host === addr.host) {
      throw new MeshError(ErrorCodes.CONFIG, `${file}: admin.listen is the same address as ${name}; the admin API needs its own listener`, { subject: file });
    }
  }
  return cfg;
}

export function loadServeConfig(file: string): ServeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${file}: cannot read configuration: ${describeError(err)}`, { subject: file, cause: err });
  }
  return parseServeConfig(text, file);
}
