import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { WatchedFile } from '../ca/index.js';
import { ErrorCodes, MeshError, writeFileAtomic, type Logger } from '../core/index.js';

/** The admin token's file name in the data dir, when admin.tokenFile does not name one. */
export const ADMIN_TOKEN_FILE = 'admin-token';

/** Shorter tokens are refused: the admin API can revoke every certificate of the mesh. */
const MIN_TOKEN_LENGTH = 16;

/**
 * DATA-DIR/admin-token, made (0600, 32 random bytes as hex) when it does not exist yet, as the first bootstrap
 * token is: `meshcert serve` with no config then has a working admin API whose secret only the data dir's owner
 * can read.
 */
export function defaultAdminTokenFile(dataDir: string): { path: string; created: boolean } {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  if (existsSync(path)) return { path, created: false };
  writeFileAtomic(path, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  return { path, created: true };
}

export type AdminTokenCheck = 'ok' | 'missing' | 'wrong' | 'token_file';

/**
 * The admin API's bearer token, read from a file (trimmed) and re-read when the file changes, so that rotating it
 * needs no restart. Only its SHA-256 is kept; a presented token is hashed and the digests are compared in
 * constant time, so neither the comparison's time nor the token's length says anything about the secret.
 */
export class AdminToken {
  readonly #file: WatchedFile<Buffer>;

  constructor(readonly path: string) {
    this.#file = new WatchedFile(path, 'admin token file', (text, file) => {
      if (text.length < MIN_TOKEN_LENGTH || /\s/.test(text)) {
        // The message never quotes the file: it holds a secret.
        throw new MeshError(ErrorCodes.CONFIG, `${file}: the admin token must be one line of at least ${MIN_TOKEN_LENGTH} characters without spaces`, {
          subject: file,
        });
      }
      return digest(text);
    });
  }

  /** Reads the file now: a missing or unusable token file is a start-up error, not a silent 401 for everyone. */
  load(logger?: Logger): void {
    this.#file.get();
    const mode = statSync(this.path).mode & 0o077;
    if (mode !== 0) logger?.warn({ file: this.path, mode: (statSync(this.path).mode & 0o777).toString(8) }, 'the admin token file is readable by group or others; chmod 600 it');
  }

  /** Judges an Authorization header value. `token_file`: the file is unreadable now, so nobody gets in (fail closed). */
  check(authorization: string | undefined): AdminTokenCheck {
    const m = authorization ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization) : null;
    if (!m) return 'missing';
    let expected: Buffer;
    try {
      expected = this.#file.get();
    } catch {
      return 'token_file';
    }
    return timingSafeEqual(digest(m[1]!), expected) ? 'ok' : 'wrong';
  }

  /** Why the token file cannot be used now, for the log (never its contents). */
  problem(): string | null {
    try {
      this.#file.get();
      return null;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
