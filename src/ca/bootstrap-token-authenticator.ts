import { createHash, timingSafeEqual } from 'node:crypto';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ErrorCodes, MeshError, systemClock, type Clock } from '../core/index.js';
import { SpiffeId, TrustDomain } from '../pki/index.js';
import type { Ledger } from '../store/index.js';
import { bearerToken, looksLikeJwt } from './jwt-authenticator.js';
import type { CallerWithCommit } from './registration-authority.js';
import type { Authenticator, CallContext } from './registration-types.js';
import { WatchedFile } from './watched-file.js';

/** One entry of a bootstrap token file, as validated. The token itself is kept only as its SHA-256. */
export interface BootstrapToken {
  name: string;
  sha256: Buffer;
  identity: SpiffeId;
  expires: Date | null;
  oneTime: boolean;
}

export interface BootstrapTokenAuthenticatorOptions {
  /** The YAML token file (see parseBootstrapTokens); re-read when it changes. */
  file: string;
  /** Every identity in the file must be in this trust domain, or in one of these (one per signing CA). */
  trustDomain: string | readonly string[];
  /** Where one-time tokens are marked used (shared by every replica). */
  ledger: Pick<Ledger, 'consumeToken'>;
  clock?: Clock;
}

/** The hex SHA-256 of a token, as `tokenSha256` holds it (`printf %s TOKEN | sha256sum`). */
export function hashBootstrapToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const MIN_TOKEN_LENGTH = 16;

const entrySchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit'),
  // YAML reads an unquoted all-digit value as a number: say to quote it.
  token: z.string({ error: 'expected a string; quote the token' }).optional(),
  tokenSha256: z
    .string({ error: 'expected a string of 64 hex digits; quote it' })
    .regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex digits (the SHA-256 of the token, e.g. `printf %s "$TOKEN" | sha256sum`)')
    .optional(),
  identity: z.string().min(1),
  expires: z.union([z.string(), z.date()]).optional(),
  oneTime: z.boolean().default(false),
});
const fileSchema = z.strictObject({ tokens: z.array(entrySchema).default([]) });

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2}))?$/;

/**
 * Parses a bootstrap token file:
 *
 * ```yaml
 * tokens:
 *   - name: vm-edge-1                                  # unique; appears in audit events, never the token
 *     tokenSha256: 5e8848…(64 hex digits)              # SHA-256 of the token (the file then holds no secret)
 *     identity: spiffe://cluster.local/ns/edge/sa/vm-1 # what the bearer of the token may be
 *     expires: 2026-01-31T00:00:00Z                    # optional; an ISO 8601 date or time with a zone
 *     oneTime: true                                    # optional (default false): usable for one certificate
 *   - name: lab-runner
 *     token: 3f9c…                                     # or the token itself (at least 16 characters)
 *     identity: spiffe://cluster.local/ns/lab/sa/runner
 * ```
 *
 * Each identity must be in one of `trustDomains` (those the server signs for: the certificate is then signed by that
 * trust domain's CA). Errors are CONFIG, naming the file and the field (`tokens[1].identity`), and never quote a token.
 */
export function parseBootstrapTokens(text: string, file: string, trustDomains: string | readonly string[]): BootstrapToken[] {
  const tds = (typeof trustDomains === 'string' ? [trustDomains] : trustDomains).map((t) => TrustDomain.parse(t, 'trustDomain'));
  const fail = (problems: string[]): MeshError =>
    new MeshError(ErrorCodes.CONFIG, `${file}: invalid bootstrap token file:\n  - ${problems.join('\n  - ')}`, {
      subject: file,
      details: { problems },
    });

  let raw: unknown;
  const doc = parseDocument(text); // prettyErrors (the default) fills linePos
  if (doc.errors.length) {
    // yaml's messages quote the offending lines, which may hold a token: report the position only.
    throw fail(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return `not valid YAML${pos ? ` at line ${pos.line}, column ${pos.col}` : ''} (${e.code})`;
      }),
    );
  }
  raw = doc.toJS();
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw fail(['expected a mapping with a "tokens" list at the top level']);
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    throw fail(
      parsed.error.issues.map((i) => {
        const at = fieldPath(i.path);
        if (i.code === 'unrecognized_keys') return `${at === '' ? '' : `${at}.`}${(i as { keys: string[] }).keys.join(', ')}: unknown field`;
        return `${at || '(top level)'}: ${i.message}`;
      }),
    );
  }

  const problems: string[] = [];
  const names = new Set<string>();
  const hashes = new Map<string, string>();
  const out: BootstrapToken[] = [];
  parsed.data.tokens.forEach((t, i) => {
    const at = `tokens[${i}]`;
    if (names.has(t.name)) problems.push(`${at}.name: "${t.name}" is used twice`);
    names.add(t.name);

    let hex: string | null = null;
    if ((t.token === undefined) === (t.tokenSha256 === undefined)) {
      problems.push(`${at}: give exactly one of token or tokenSha256`);
    } else if (t.token !== undefined) {
      const token = t.token.trim();
      if (token.length < MIN_TOKEN_LENGTH) problems.push(`${at}.token: too short; use at least ${MIN_TOKEN_LENGTH} random characters (e.g. \`openssl rand -hex 32\`)`);
      else if (/\s/.test(token)) problems.push(`${at}.token: contains whitespace, which a bearer token cannot carry`);
      // A JWT-shaped token would be taken for a JWT by the JWT authenticator and never reach this one.
      else if (looksLikeJwt(token)) problems.push(`${at}.token: has the shape of a JWT (three dot-separated parts); use a random string`);
      else hex = hashBootstrapToken(token);
    } else {
      hex = t.tokenSha256!.toLowerCase();
    }
    if (hex !== null) {
      const other = hashes.get(hex);
      if (other !== undefined) problems.push(`${at}: the same token as "${other}"`);
      hashes.set(hex, t.name);
    }

    const id = SpiffeId.tryParse(t.identity);
    if (!id.ok) problems.push(`${at}.identity: "${t.identity}" is not a SPIFFE ID: ${id.message}`);
    else if (!tds.some((td) => id.value.memberOf(td))) {
      problems.push(
        tds.length === 1
          ? `${at}.identity: "${t.identity}" is not in this CA's trust domain "${tds[0]!.name}"`
          : `${at}.identity: "${t.identity}" is in trust domain "${id.value.trustDomain}", which this CA does not sign for (${tds.map((td) => `"${td.name}"`).join(', ')})`,
      );
    }
    else if (id.value.path === '') problems.push(`${at}.identity: "${t.identity}" has no path; a workload identity needs one`);

    let expires: Date | null = null;
    if (t.expires !== undefined) {
      const ms = t.expires instanceof Date ? t.expires.getTime() : ISO_TIME.test(t.expires) ? Date.parse(t.expires) : NaN;
      if (!Number.isFinite(ms)) problems.push(`${at}.expires: not an ISO 8601 date or time with a zone (e.g. 2026-01-31T00:00:00Z)`);
      else expires = new Date(ms);
    }
    if (hex !== null && id.ok) out.push({ name: t.name, sha256: Buffer.from(hex, 'hex'), identity: id.value, expires, oneTime: t.oneTime });
  });
  if (problems.length) throw fail(problems);
  return out;
}

/**
 * Authenticates workloads outside Kubernetes with bootstrap tokens from a file (see parseBootstrapTokens):
 * `authorization: Bearer <token>`. The presented token is hashed and compared in constant time with every entry.
 * An expired token, or a one-time token used before, is UNAUTHENTICATED; a token in no entry is UNAUTHENTICATED
 * too, unless it looks like a JWT (null: the JWT authenticator's business).
 *
 * One-time tokens are spent by `commit()` on the returned caller, which the RegistrationAuthority calls once the
 * request is authorized and before it issues: a CSR refused for a fixable mistake does not burn the token, and two
 * concurrent uses still yield one certificate (the ledger's consumeToken is atomic). Anyone driving this
 * authenticator without the RA must call `commit()` too.
 */
export class BootstrapTokenAuthenticator implements Authenticator {
  readonly method = 'bootstrap-token' as const;
  readonly file: string;
  readonly #tokens: WatchedFile<BootstrapToken[]>;
  readonly #ledger: Pick<Ledger, 'consumeToken'>;
  readonly #clock: Clock;

  constructor(options: BootstrapTokenAuthenticatorOptions) {
    this.file = options.file;
    const tds = (typeof options.trustDomain === 'string' ? [options.trustDomain] : options.trustDomain).map((t) => TrustDomain.parse(t, 'trustDomain').name);
    this.#tokens = new WatchedFile(options.file, 'bootstrap token file', (text, file) => parseBootstrapTokens(text, file, tds));
    this.#ledger = options.ledger;
    this.#clock = options.clock ?? systemClock;
    // Read now: a bad file stops the server at start (CONFIG naming the file and field).
    this.#tokens.get();
  }

  /** The tokens as currently in the file (re-read if it changed). */
  tokens(): BootstrapToken[] {
    return this.#tokens.get();
  }

  async authenticate(ctx: CallContext): Promise<CallerWithCommit | null> {
    const token = bearerToken(ctx);
    if (token === null) return null;
    const tokens = this.#tokens.get();
    const presented = createHash('sha256').update(token, 'utf8').digest();
    // Compare with every entry, without stopping at a match, so timing says nothing about which entry matched.
    let match: BootstrapToken | null = null;
    for (const t of tokens) {
      if (timingSafeEqual(presented, t.sha256) && match === null) match = t;
    }
    if (!match) {
      if (looksLikeJwt(token)) return null;
      throw denied('the bearer token is not a known bootstrap token (it may have been removed from the token file)');
    }
    const now = this.#clock.now();
    if (match.expires && now.getTime() >= match.expires.getTime()) {
      throw denied(`bootstrap token "${match.name}" expired at ${match.expires.toISOString()}; ask for a new one`);
    }
    const t = match;
    const caller: CallerWithCommit = {
      spiffeId: t.identity,
      method: 'bootstrap-token',
      principal: `bootstrap token ${t.name}${t.oneTime ? ' (one-time)' : ''}`,
      commit: async () => {
        if (!t.oneTime) return;
        // The hash, not the name: a token re-issued under the same name is a new token.
        const first = await this.#ledger.consumeToken(`bootstrap-token:sha256:${t.sha256.toString('hex')}`, this.#clock.now());
        if (!first) throw denied(`one-time bootstrap token "${t.name}" was already used; ask for a new one`);
      },
    };
    return caller;
  }
}

function denied(message: string): MeshError {
  return new MeshError(ErrorCodes.UNAUTHENTICATED, message, { details: { method: 'bootstrap-token' } });
}

function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}
