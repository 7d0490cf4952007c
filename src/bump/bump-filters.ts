import { existsSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/** A decrypted (or plain forward-proxied) request as filters see it. Header names are lower-case. */
export interface BumpHttpRequest {
  /** The client's address, "127.0.0.1:53122". */
  readonly client: string;
  /** The name the connection was made for: SNI, else the CONNECT host; for plain HTTP the URL's host. */
  readonly serverName: string;
  /** bumped: decrypted TLS; forward: plain-HTTP forward proxying. */
  readonly mode: 'bumped' | 'forward';
  readonly protocol: 'http/1.1' | 'h2';
  readonly method: string;
  /** Host from the Host header or :authority, lower-case, without the port. */
  readonly host: string;
  /** Path and query as sent. */
  readonly path: string;
  /** The absolute URL, for logs and audit. */
  readonly url: string;
  /** Mutable: filters add and remove request headers here before the request goes upstream. */
  headers: Record<string, string | string[]>;
}

/** The upstream's response head as filters see it; headers are mutable. */
export interface BumpHttpResponse {
  readonly status: number;
  headers: Record<string, string | string[]>;
}

/** What a request filter decides: nothing (go on), allow (no later access rule may deny), or deny with a reason. */
export type FilterVerdict = void | undefined | { allow: true } | { deny: string; status?: number };

/**
 * A bump filter. Users write their own as an ES module (JavaScript, or TypeScript when tsx is installed) whose
 * default export is a BumpFilter or a function `(options) => BumpFilter` (maybe async), and list it in the config
 * as `- module: { path: ./my-filter.js, options: {…} }`.
 */
export interface BumpFilter {
  readonly name: string;
  onRequest?(req: BumpHttpRequest): FilterVerdict | Promise<FilterVerdict>;
  onResponse?(res: BumpHttpResponse, req: BumpHttpRequest): void | Promise<void>;
}

export interface RequestMatch {
  /** Exact names or `*.example.com` patterns. */
  host?: string | string[];
  pathPrefix?: string;
  method?: string | string[];
}

function list(v: string | string[] | undefined): string[] | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v : [v];
}

function hostMatches(patterns: string[], host: string): boolean {
  return patterns.some((p) => {
    const pat = p.toLowerCase().replace(/\.$/, '');
    return pat.startsWith('*.') ? host.length > pat.length - 1 && host.endsWith(pat.slice(1)) : host === pat;
  });
}

/** One access rule: `allow` or `deny` the requests it matches; a rule with no criteria matches every request. */
export function accessRule(kind: 'allow' | 'deny', match: RequestMatch, reason?: string, status = 403): BumpFilter {
  const hosts = list(match.host);
  const methods = list(match.method)?.map((m) => m.toUpperCase());
  const parts = [hosts && `host ${hosts.join('|')}`, match.pathPrefix && `path ${match.pathPrefix}*`, methods && `method ${methods.join('|')}`].filter(Boolean);
  const what = parts.length ? parts.join(', ') : 'every request';
  return {
    name: `${kind} ${what}`,
    onRequest(req) {
      if (hosts && !hostMatches(hosts, req.host)) return undefined;
      if (match.pathPrefix !== undefined && !req.path.startsWith(match.pathPrefix)) return undefined;
      if (methods && !methods.includes(req.method.toUpperCase())) return undefined;
      return kind === 'allow' ? { allow: true } : { deny: reason ?? `denied by rule: ${what}`, status };
    },
  };
}

function addHeader(headers: Record<string, string | string[]>, name: string, value: string): void {
  const n = name.toLowerCase();
  const old = headers[n];
  headers[n] = old === undefined ? value : Array.isArray(old) ? [...old, value] : [old, value];
}

export function headerFilter(direction: 'request' | 'response', op: 'add' | 'remove', name: string, value = ''): BumpFilter {
  const n = name.toLowerCase();
  const apply = (h: Record<string, string | string[]>): void => {
    if (op === 'add') addHeader(h, n, value);
    else delete h[n];
  };
  const label = `${op}${direction === 'request' ? 'Request' : 'Response'}Header ${n}`;
  return direction === 'request'
    ? { name: label, onRequest: (req) => void apply(req.headers) }
    : { name: label, onResponse: (res) => apply(res.headers) };
}

function isFilter(v: unknown): v is BumpFilter {
  if (typeof v !== 'object' || v === null) return false;
  const f = v as Record<string, unknown>;
  return (
    typeof f.name === 'string' &&
    (f.onRequest === undefined || typeof f.onRequest === 'function') &&
    (f.onResponse === undefined || typeof f.onResponse === 'function') &&
    (f.onRequest !== undefined || f.onResponse !== undefined)
  );
}

/**
 * Loads a user filter module by path (relative to `baseDir`). `.ts`/`.mts` modules are loaded through tsx when it is
 * installed (it is a development dependency of meshcert); compiled `.js`/`.mjs` modules always work.
 */
export async function loadFilterModule(path: string, options: unknown, baseDir = process.cwd()): Promise<BumpFilter> {
  const file = resolve(baseDir, path);
  const fail = (why: string, cause?: unknown): never => {
    throw new MeshError(ErrorCodes.BUMP_FILTER, `filter module ${file}: ${why}`, { subject: file, cause });
  };
  if (!existsSync(file)) fail('no such file');
  let mod: Record<string, unknown>;
  try {
    if (['.ts', '.mts', '.cts'].includes(extname(file))) {
      let tsImport: (specifier: string, parent: string) => Promise<unknown>;
      try {
        ({ tsImport } = (await import('tsx/esm/api')) as { tsImport: typeof tsImport });
      } catch (err) {
        return fail('is TypeScript, and tsx is not installed to load it; compile it to .js (tsc) or install tsx', err);
      }
      mod = (await tsImport(pathToFileURL(file).href, import.meta.url)) as Record<string, unknown>;
    } else {
      mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    }
  } catch (err) {
    return fail(`cannot be loaded: ${describeError(err)}`, err);
  }
  let exported = mod.default ?? mod.filter ?? mod.createFilter;
  // A TypeScript module compiled as CommonJS arrives as { default: … } inside the namespace's default.
  if (exported && typeof exported === 'object' && !isFilter(exported) && 'default' in exported) exported = (exported as { default: unknown }).default;
  let filter: unknown = exported;
  if (typeof exported === 'function') {
    try {
      filter = await (exported as (o: unknown) => unknown)(options);
    } catch (err) {
      return fail(`its factory threw: ${describeError(err)}`, err);
    }
  }
  if (!isFilter(filter)) {
    fail('the default export must be a filter { name, onRequest?, onResponse? } or a function (options) => filter');
  }
  return filter as BumpFilter;
}

export interface RequestOutcome {
  denied: { reason: string; status: number; filter: string } | null;
}

/** Runs request filters in order: the first deny (not preceded by an allow) stops the request. */
export async function runRequestFilters(filters: readonly BumpFilter[], req: BumpHttpRequest): Promise<RequestOutcome> {
  let allowed = false;
  for (const f of filters) {
    if (!f.onRequest) continue;
    let verdict: FilterVerdict;
    try {
      verdict = await f.onRequest(req);
    } catch (err) {
      throw new MeshError(ErrorCodes.BUMP_FILTER, `filter "${f.name}" failed on ${req.method} ${req.url}: ${describeError(err)}`, { subject: f.name, cause: err });
    }
    if (!verdict) continue;
    if ('allow' in verdict) allowed = true;
    else if ('deny' in verdict && !allowed) return { denied: { reason: verdict.deny, status: verdict.status ?? 403, filter: f.name } };
  }
  return { denied: null };
}

export async function runResponseFilters(filters: readonly BumpFilter[], res: BumpHttpResponse, req: BumpHttpRequest): Promise<void> {
  for (const f of filters) {
    if (!f.onResponse) continue;
    try {
      await f.onResponse(res, req);
    } catch (err) {
      throw new MeshError(ErrorCodes.BUMP_FILTER, `filter "${f.name}" failed on the response to ${req.method} ${req.url}: ${describeError(err)}`, {
        subject: f.name,
        cause: err,
      });
    }
  }
}
