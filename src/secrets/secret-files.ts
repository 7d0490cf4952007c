import { readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describeError } from '../core/index.js';
import { isHiddenName, isMountedSecretDir, mountedSecretSignature, readMountedSecret } from './mounted-secret.js';
import { secretError, type RawSecret, type SecretProblem } from './raw-secret.js';
import { isManifestFileName, loadManifestFile, type ManifestProblem } from './secret-manifest.js';

/** One unit that is read as a whole: a manifest file, or a mounted secret folder. */
export interface SecretOrigin {
  path: string;
  kind: 'manifest' | 'mounted';
}

export interface OriginListing {
  origins: SecretOrigin[];
  /** Paths given that cannot be used (missing, unreadable). */
  problems: Array<{ path: string; problem: SecretProblem }>;
  /** Folders whose entries to watch: the folders given, and every mounted secret folder (the kubelet swaps `..data` there). */
  watchDirs: string[];
}

/**
 * Expands the paths a user gives (`sds.secrets`, `meshcert secret check PATH…`): a manifest file; a mounted secret
 * folder (it has `..data` or a certificate key); or a folder holding manifest files (*.yaml, *.yml, *.json) and
 * mounted secret folders, one level deep. Hidden names are skipped: editors' swap files, the kubelet's internals.
 */
export function listOrigins(paths: readonly string[]): OriginListing {
  const out: OriginListing = { origins: [], problems: [], watchDirs: [] };
  const seen = new Set<string>();
  const add = (o: SecretOrigin) => {
    if (seen.has(o.path)) return;
    seen.add(o.path);
    out.origins.push(o);
  };
  for (const given of paths) {
    const p = resolve(given);
    let isDir: boolean;
    try {
      const st = statSync(p);
      isDir = st.isDirectory();
      if (!isDir && !st.isFile()) {
        out.problems.push({ path: given, problem: secretError('read', `${given}: neither a file nor a folder`) });
        continue;
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file or folder' : code === 'EACCES' ? 'permission denied' : describeError(err);
      out.problems.push({ path: given, problem: secretError('read', `${given}: ${why}`) });
      continue;
    }
    if (!isDir) {
      add({ path: p, kind: 'manifest' });
      // Editors and kubectl replace a file by renaming over it: watch its folder, not the file's inode.
      if (!out.watchDirs.includes(dirname(p))) out.watchDirs.push(dirname(p));
      continue;
    }
    if (isMountedSecretDir(p)) {
      add({ path: p, kind: 'mounted' });
      out.watchDirs.push(p);
      continue;
    }
    out.watchDirs.push(p);
    let entries;
    try {
      entries = readdirSync(p, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch (err) {
      out.problems.push({ path: given, problem: secretError('read', `${given}: cannot list the folder: ${describeError(err)}`) });
      continue;
    }
    for (const e of entries) {
      if (isHiddenName(e.name)) continue;
      const child = join(p, e.name);
      let dir = e.isDirectory();
      let file = e.isFile();
      if (e.isSymbolicLink()) {
        try {
          const st = statSync(child);
          dir = st.isDirectory();
          file = st.isFile();
        } catch {
          continue;
        }
      }
      if (file && isManifestFileName(e.name)) add({ path: child, kind: 'manifest' });
      else if (dir) {
        add({ path: child, kind: 'mounted' });
        out.watchDirs.push(child);
      }
    }
  }
  return out;
}

/** Changes when the origin's contents may have changed (inode, size, times; the `..data` target). */
export function originSignature(origin: SecretOrigin): string {
  if (origin.kind === 'mounted') return mountedSecretSignature(origin.path);
  try {
    const st = statSync(origin.path, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch (err) {
    return `error:${describeError(err)}`;
  }
}

export interface LoadedOrigin {
  origin: SecretOrigin;
  secrets: RawSecret[];
  problems: ManifestProblem[];
  ignored: string[];
  /** The whole origin is unusable: its secrets keep their last good version. */
  fileError?: SecretProblem;
}

export function loadOrigin(origin: SecretOrigin): LoadedOrigin {
  if (origin.kind === 'manifest') return { origin, ...loadManifestFile(origin.path) };
  const read = readMountedSecret(origin.path);
  if (read.ok) return { origin, secrets: [read.secret], problems: [], ignored: [] };
  return { origin, secrets: [], problems: [], ignored: [], fileError: read.problem };
}
