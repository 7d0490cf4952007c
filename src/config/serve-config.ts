import { readFileSync } from 'node:fs';
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
  })
  .refine((j) => (j.jwksFile === undefined) !== (j.publicKeyFiles === undefined), {
    message: 'give exactly one of jwksFile or publicKeyFiles',
  });

const dnsGrant = z.strictObject({
  /** A SPIFFE ID, or a pattern with `*` as a whole last path segment or suffix (spiffe://td/ns/web/sa/*). */
  identity: z.string().min(1),
  dnsNames: z.array(z.string().min(1)).min(1),
});

/** The `meshcert serve` configuration file. Sections that are absent are off. */
export const serveConfigSchema = z.strictObject({
  trustDomain: z.string().min(1).default('cluster.local'),
  grpc: z
    .strictObject({
      listen: listenAddress,
      dnsNames: z.array(z.string().min(1)).min(1).default(['istiod.istio-system.svc', 'localhost']),
      /** Lifetime of the gRPC serving certificate; renewed at two thirds. */
      certificateTtl: duration.prefault('24h'),
      maxCsrBytes: z.number().int().min(512).max(1_048_576).default(16_384),
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
});

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
