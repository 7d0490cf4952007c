import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/** Istio's workload file names. */
export const OUTPUT_FILES = { certChain: 'cert-chain.pem', key: 'key.pem', rootCert: 'root-cert.pem' } as const;

/** The symlink that names the current version, as Kubernetes' AtomicWriter names it for secret volumes. */
export const DATA_LINK = '..data';
const DATA_LINK_TMP = '..data_tmp';

export interface OutputContents {
  certChainPem: string;
  keyPem: string;
  rootCertPem: string;
}

/**
 * The agent's output folder, changed as Kubernetes changes a secret volume, so that a reader never pairs a new
 * certificate with an old key:
 *
 *   OUT/..2026-11-26T01-52-24.123Z.a1b2c3/   one folder per version: cert-chain.pem, key.pem (0600), root-cert.pem
 *   OUT/..data -> ..2026-11-26T01-52-24.123Z.a1b2c3    the current version (a relative symlink)
 *   OUT/cert-chain.pem -> ..data/cert-chain.pem        made once; so are key.pem and root-cert.pem
 *
 * A new version is written and fsynced in its own folder, then `..data` is replaced by one rename(2) of a new
 * symlink over it: every path under OUT switches at the same instant, and a crash at any point leaves either the
 * old version or the new one. The version just replaced stays until the next swap, so that a reader that resolved
 * `..data` a moment before still reads a whole version; older ones are removed after the swap (and leftovers of a
 * crash at the next start). A reader that opens several files should resolve OUT/..data once and read them there.
 */
export class OutputFolder {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  /** Creates the folder if needed and proves it writable (a probe file), removing crash leftovers. */
  prepare(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      const probe = join(this.dir, `.probe-${randomBytes(4).toString('hex')}`);
      closeSync(openSync(probe, 'wx', 0o600));
      unlinkSync(probe);
    } catch (err) {
      throw new MeshError(ErrorCodes.FILE_WRITE, `--out-dir ${this.dir}: not writable: ${whyOf(err)}`, { subject: this.dir, cause: err });
    }
    this.#removeStale(this.#current());
  }

  /** The name of the current version folder, or null. */
  #current(): string | null {
    try {
      return readlinkSync(join(this.dir, DATA_LINK));
    } catch {
      return null;
    }
  }

  /** The current files, when all three are there (an agent restarted over its own output). */
  read(): OutputContents | null {
    try {
      return {
        certChainPem: readFileSync(join(this.dir, OUTPUT_FILES.certChain), 'utf8'),
        keyPem: readFileSync(join(this.dir, OUTPUT_FILES.key), 'utf8'),
        rootCertPem: readFileSync(join(this.dir, OUTPUT_FILES.rootCert), 'utf8'),
      };
    } catch {
      return null;
    }
  }

  /** Writes a new version and makes it current in one step; returns the version folder's name. */
  write(contents: OutputContents, at: Date = new Date()): string {
    const name = `..${at.toISOString().replace(/:/g, '-')}.${randomBytes(3).toString('hex')}`;
    const versionDir = join(this.dir, name);
    const previous = this.#current();
    try {
      mkdirSync(versionDir, { mode: 0o755 });
      writeDurably(join(versionDir, OUTPUT_FILES.certChain), contents.certChainPem, 0o644);
      writeDurably(join(versionDir, OUTPUT_FILES.key), contents.keyPem, 0o600);
      writeDurably(join(versionDir, OUTPUT_FILES.rootCert), contents.rootCertPem, 0o644);
      fsyncPath(versionDir);
      // The swap: a fresh symlink renamed over ..data.
      const tmp = join(this.dir, DATA_LINK_TMP);
      rmSync(tmp, { force: true });
      symlinkSync(name, tmp);
      renameSync(tmp, join(this.dir, DATA_LINK));
      // The per-file links point through ..data, so they are made once (and repaired if someone replaced them).
      for (const file of Object.values(OUTPUT_FILES)) ensureLink(this.dir, file);
      fsyncPath(this.dir);
    } catch (err) {
      if (this.#current() !== name) rmSync(versionDir, { recursive: true, force: true });
      throw new MeshError(ErrorCodes.FILE_WRITE, `--out-dir ${this.dir}: cannot write the new certificate files: ${whyOf(err)}`, { subject: this.dir, cause: err });
    }
    this.#removeStale(name, previous);
    return name;
  }

  /** Removes version folders other than those kept (crash leftovers and superseded versions). */
  #removeStale(keep: string | null, alsoKeep: string | null = null): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const n of names) {
      if (!n.startsWith('..') || n === DATA_LINK || n === keep || n === alsoKeep) continue;
      try {
        const st = lstatSync(join(this.dir, n));
        if (st.isDirectory() || n === DATA_LINK_TMP) rmSync(join(this.dir, n), { recursive: true, force: true });
      } catch {
        // Gone already.
      }
    }
  }
}

function whyOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EROFS') return 'read-only file system';
  if (code === 'ENOSPC') return 'no space left on the device';
  if (code === 'ENOTDIR' || code === 'EEXIST') return 'a file that is not a folder is in the way';
  return describeError(err);
}

function writeDurably(path: string, text: string, mode: number): void {
  const fd = openSync(path, 'wx', mode);
  try {
    const buf = Buffer.from(text, 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncPath(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a folder; rename is atomic all the same.
  }
}

/** OUT/file -> ..data/file, replacing (by rename) whatever else is there, e.g. a plain file from `cert request`. */
function ensureLink(dir: string, file: string): void {
  const path = join(dir, file);
  const target = `${DATA_LINK}/${file}`;
  try {
    if (lstatSync(path).isSymbolicLink() && readlinkSync(path) === target) return;
  } catch {
    // Absent: made below.
  }
  const tmp = join(dir, `.${file}.${randomBytes(3).toString('hex')}.link`);
  symlinkSync(target, tmp);
  renameSync(tmp, path);
}
