import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';
import { configError } from './config-errors.js';
import { duration, listenAddress } from './fields.js';

/** An SNI pattern: an exact host name or `*.example.com`. */
const hostPattern = z
  .string()
  .min(1)
  .refine((s) => /^(?:\*\.)?[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?$/i.test(s), { message: 'expected a host name or *.domain pattern' });

const stringOrList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

const match = z.strictObject({
  host: z.union([hostPattern, z.array(hostPattern).min(1)]).optional(),
  pathPrefix: z.string().startsWith('/').optional(),
  method: stringOrList.optional(),
  reason: z.string().optional(),
  status: z.number().int().min(400).max(599).optional(),
});

const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'expected an HTTP header name');
const header = z.strictObject({ name: headerName, value: z.string() });

/** One filter: exactly one of these keys, applied in the order written. */
const FILTER_KINDS = ['deny', 'allow', 'addRequestHeader', 'removeRequestHeader', 'addResponseHeader', 'removeResponseHeader', 'module'] as const;
const filter = z
  .strictObject({
    deny: match.optional(),
    allow: match.optional(),
    addRequestHeader: header.optional(),
    removeRequestHeader: z.strictObject({ name: headerName }).optional(),
    addResponseHeader: header.optional(),
    removeResponseHeader: z.strictObject({ name: headerName }).optional(),
    module: z.strictObject({ path: z.string().min(1), options: z.unknown().optional() }).optional(),
  })
  .refine((f) => FILTER_KINDS.filter((k) => f[k] !== undefined).length === 1, {
    message: `each filter is exactly one of ${FILTER_KINDS.join(', ')}`,
  });

const keyType = z.enum(['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519']);

export const bumpConfigSchema = z.strictObject({
  listen: listenAddress.default({ host: '127.0.0.1', port: 3128 }),
  transparentListen: listenAddress.optional(),
  caDir: z.string().min(1).default('./.meshcert/bump'),
  upstream: z
    .strictObject({
      caFile: z.string().min(1).optional(),
      resolve: z.record(z.string().regex(/^[^:\s]+:\d{1,5}$/, 'keys are HOST:PORT'), z.string().regex(/^(?:\[[^\]]+\]|[^:\s]+):\d{1,5}$/, 'expected HOST:PORT')).default({}),
      onInvalidCertificate: z.enum(['mimic-error', 'refuse']).default('mimic-error'),
      connectTimeout: duration.default(10_000),
      transparentPort: z.number().int().min(1).max(65535).default(443),
      reuseVerifiedFor: duration.default(60_000),
    })
    .default({ resolve: {}, onInvalidCertificate: 'mimic-error', connectTimeout: 10_000, transparentPort: 443, reuseVerifiedFor: 60_000 }),
  splice: z.array(hostPattern).default([]),
  bump: z.array(hostPattern).default([]),
  defaultAction: z.enum(['bump', 'splice']).default('bump'),
  filters: z.array(filter).default([]),
  auditLog: z.string().min(1).optional(),
  mimic: z
    .strictObject({
      cacheSize: z.number().int().min(1).max(10_000_000).default(10_000),
      maxValidity: duration.default(7 * 86_400_000),
      keyPoolSize: z.number().int().min(1).max(1024).default(8),
      prefillKeyTypes: z.array(keyType).default(['ec-p256', 'rsa-2048']),
    })
    .default({ cacheSize: 10_000, maxValidity: 7 * 86_400_000, keyPoolSize: 8, prefillKeyTypes: ['ec-p256', 'rsa-2048'] }),
  admin: z.strictObject({ listen: listenAddress }).optional(),
  clientHelloTimeout: duration.default(10_000),
  idleTimeout: duration.default(120_000),
});

export type BumpConfig = z.infer<typeof bumpConfigSchema>;
export type BumpFilterConfig = z.infer<typeof filter>;

export function parseBumpConfig(text: string, file = 'config'): BumpConfig {
  let raw: unknown;
  try {
    const docs = parseAllDocuments(text);
    if (Array.isArray(docs) && docs.length > 1) throw new Error('expected one YAML document, found several');
    const doc = Array.isArray(docs) ? docs[0] : docs;
    if (!doc) raw = {};
    else {
      if ('errors' in doc && doc.errors.length) throw new Error(doc.errors.map((e) => e.message).join('; '));
      raw = doc.toJS() ?? {};
    }
  } catch (err) {
    throw new MeshError(ErrorCodes.CONFIG, `${file}: not valid YAML: ${describeError(err)}`, { subject: file, cause: err });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new MeshError(ErrorCodes.CONFIG, `${file}: expected a mapping of settings at the top level`, { subject: file });
  }
  const res = bumpConfigSchema.safeParse(raw);
  if (!res.success) throw configError(file, res.error);
  const cfg = res.data;
  const addrs = [
    ['listen', cfg.listen],
    ['transparentListen', cfg.transparentListen],
    ['admin.listen', cfg.admin?.listen],
  ] as const;
  for (let i = 0; i < addrs.length; i++) {
    for (let j = i + 1; j < addrs.length; j++) {
      const [an, a] = addrs[i]!;
      const [bn, b] = addrs[j]!;
      if (a && b && a.port !== 0 && a.port === b.port && a.host === b.host) {
        throw new MeshError(ErrorCodes.CONFIG, `${file}: ${bn} is the same address as ${an}; each listener needs its own`, { subject: bn });
      }
    }
  }
  return cfg;
}

export function loadBumpConfig(file: string): BumpConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${file}: cannot read configuration: ${describeError(err)}`, { subject: file, cause: err });
  }
  return parseBumpConfig(text, file);
}

export function defaultBumpConfig(): BumpConfig {
  return parseBumpConfig('{}', '(defaults)');
}
