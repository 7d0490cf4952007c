import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { hashBootstrapToken, parseBootstrapTokens } from '../ca/index.js';
import { writeFileAtomic, type Clock } from '../core/index.js';

/** File names in the data dir: the token list (hashes only, no secret) and the token itself (0600). */
export const FIRST_TOKEN_FILES = { list: 'bootstrap-tokens.yaml', token: 'bootstrap-token' } as const;

/** How long the first-start token stays valid: enough to set up a first workload, not a standing credential. */
const FIRST_TOKEN_TTL_MS = 24 * 3_600_000;

export interface FirstToken {
  /** The bootstrap token list the registration authority reads (auth.bootstrapTokens). */
  listFile: string;
  /** The secret a user passes to `meshcert cert request --bootstrap-token-file`. */
  tokenFile: string;
  identity: string;
  expires: Date;
}

/**
 * The bootstrap token that lets a fresh `meshcert serve` hand out a first certificate with nothing else set up:
 * made once, when the CA is created, as a one-time token for spiffe://TD/ns/default/sa/default that expires after
 * a day. The list file holds only its SHA-256, in the format BootstrapTokenAuthenticator reads. Returns null when
 * there is no such token (the data dir predates it, or it has expired).
 */
export function firstStartToken(dataDir: string, trustDomain: string, createdCa: boolean, clock: Clock): FirstToken | null {
  const listFile = join(dataDir, FIRST_TOKEN_FILES.list);
  const tokenFile = join(dataDir, FIRST_TOKEN_FILES.token);
  if (createdCa && !existsSync(listFile)) {
    const token = randomBytes(32).toString('hex');
    const expires = new Date(Math.floor((clock.now().getTime() + FIRST_TOKEN_TTL_MS) / 1000) * 1000);
    const identity = `spiffe://${trustDomain}/ns/default/sa/default`;
    // The secret first: a list entry without its token file would be a credential nobody holds.
    writeFileAtomic(tokenFile, `${token}\n`, { mode: 0o600 });
    const doc = { tokens: [{ name: 'first-start', tokenSha256: hashBootstrapToken(token), identity, expires: expires.toISOString(), oneTime: true }] };
    writeFileAtomic(
      listFile,
      `# Bootstrap tokens for \`meshcert serve\` (see BootstrapTokenAuthenticator). Made on the first start of this CA:\n` +
        `# one token, one-time, for ${identity}; the token itself is in ${FIRST_TOKEN_FILES.token} (0600).\n${stringify(doc)}`,
    );
  }
  if (!existsSync(listFile)) return null;
  // A broken list file is a CONFIG error naming the file and field, from the authenticator's own parser.
  const entry = parseBootstrapTokens(readFileSync(listFile, 'utf8').trim(), listFile, trustDomain).find((t) => t.name === 'first-start');
  if (!entry || !existsSync(tokenFile) || (entry.expires && entry.expires.getTime() <= clock.now().getTime())) return null;
  return { listFile, tokenFile, identity: entry.identity.toString(), expires: entry.expires ?? new Date(8.64e15) };
}
