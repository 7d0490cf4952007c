import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ErrorCodes, MeshError, describeError } from './errors.js';

export interface AtomicWriteOptions {
  /** File mode; private keys are written 0o600. */
  mode?: number;
  /** Refuse to replace an existing file. */
  exclusive?: boolean;
}

/**
 * Replaces a file atomically: write a temp file in the same folder, fsync, rename. A reader never sees half a
 * certificate, and a failure leaves the old file as it was.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): void {
  const dir = dirname(path);
  const mode = options.mode ?? 0o644;
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    mkdirSync(dir, { recursive: true });
    fd = openSync(tmp, 'wx', mode);
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    if (options.exclusive) {
      // link(2)-free exclusivity check: rename would silently replace, so refuse when the target exists.
      try {
        openSync(path, 'r');
        throw new MeshError(ErrorCodes.FILE_WRITE, `${path}: already exists; refusing to replace it`, { subject: path });
      } catch (err) {
        if (err instanceof MeshError) throw err;
      }
    }
    renameSync(tmp, path);
    try {
      const dfd = openSync(dir, 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch {
      // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
    }
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* the temp file may not exist */
    }
    if (err instanceof MeshError) throw err;
    throw new MeshError(ErrorCodes.FILE_WRITE, `${path}: cannot write: ${describeError(err)}`, { subject: path, cause: err });
  }
}
