import { closeSync, fstatSync, openSync, readFileSync, statSync, type BigIntStats } from 'node:fs';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/**
 * A file that credentials depend on (token lists, JWKS, public keys), read with surrounding whitespace trimmed and
 * re-read when it changes. Each `get()` stats the file (a few µs) and compares device, inode, size, mtime and ctime
 * in nanoseconds, so an edit in place, an atomic rename and a Kubernetes secret-mount symlink swap are all seen on
 * the next request, with no watcher to leak or close. Contents are never logged: parse functions must build their
 * error messages without quoting the text.
 *
 * A file that becomes unreadable or unparsable is an error until it is fixed (fail closed): for credentials, serving
 * stale keys or revoked tokens would be worse than refusing.
 */
export class WatchedFile<T> {
  #signature: string | null = null;
  #value: T | undefined;
  #error: unknown;

  /**
   * @param what a few words for messages ("bootstrap token file").
   * @param parse turns the trimmed text into a value; throws MeshError (CONFIG) naming `path` and the field at fault.
   */
  constructor(
    readonly path: string,
    readonly what: string,
    private readonly parse: (text: string, path: string) => T,
  ) {}

  /** The current value, re-read and re-parsed if the file changed since the last call. Throws while it is bad. */
  get(): T {
    let st: BigIntStats;
    try {
      st = statSync(this.path, { bigint: true });
    } catch (err) {
      this.#signature = null;
      throw this.#readError(err);
    }
    if (signatureOf(st) !== this.#signature) this.#load();
    if (this.#error !== undefined) throw this.#error;
    return this.#value as T;
  }

  #load(): void {
    let text: string;
    let sig: string;
    let fd: number | undefined;
    try {
      fd = openSync(this.path, 'r');
      // The signature comes from the descriptor we read, so a change after this point is seen on the next get().
      sig = signatureOf(fstatSync(fd, { bigint: true }));
      text = readFileSync(fd, 'utf8');
    } catch (err) {
      this.#signature = null;
      throw this.#readError(err);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    this.#signature = sig;
    try {
      this.#value = this.parse(text.trim(), this.path);
      this.#error = undefined;
    } catch (err) {
      // Remembered per version of the file: the same bad file is not re-parsed on every request.
      this.#value = undefined;
      this.#error =
        err instanceof MeshError
          ? err
          : new MeshError(ErrorCodes.CONFIG, `${this.path}: invalid ${this.what}: ${describeError(err)}`, { subject: this.path, cause: err });
    }
  }

  #readError(err: unknown): MeshError {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : describeError(err);
    return new MeshError(ErrorCodes.FILE_READ, `${this.path}: cannot read the ${this.what}: ${why}`, { subject: this.path, cause: err });
  }
}

function signatureOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}
