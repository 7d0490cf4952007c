import { lstatSync, readFileSync, readdirSync, realpathSync, statSync, type BigIntStats } from 'node:fs';
import { basename, join } from 'node:path';
import { describeError } from '../core/index.js';
import { SECRET_KEY_PATTERN, secretError, type RawSecret, type SecretProblem } from './raw-secret.js';

/**
 * The layout the kubelet gives a Secret volume: one file per key, and on every update a new timestamped folder
 * whose `..data` symlink is swapped atomically (`tls.crt -> ..data/tls.crt`). Hidden names (`..data`,
 * `..2024_01_01…`, editors' and our own temp files) are never keys.
 */
export const KUBELET_DATA_LINK = '..data';

/** Keys whose presence marks a folder as one mounted secret (rather than a folder of secrets). */
const MARKER_KEYS = ['tls.crt', 'tls.key', 'cert', 'key', 'ca.crt', 'cacert'];

/** Reads this many times at most while the kubelet keeps swapping `..data` under us. */
const MAX_ATTEMPTS = 5;

export function isHiddenName(name: string): boolean {
  return name.startsWith('.');
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** True when `dir` itself is a mounted secret: it has the kubelet's `..data` link or one of the certificate keys. */
export function isMountedSecretDir(dir: string): boolean {
  if (exists(join(dir, KUBELET_DATA_LINK))) return true;
  return MARKER_KEYS.some((k) => {
    try {
      return statSync(join(dir, k)).isFile();
    } catch {
      return false;
    }
  });
}

function sig(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** The folder the key files really live in: the `..data` target in the kubelet layout, else the folder itself. */
function dataDir(dir: string): { base: string; link: string | null } {
  const link = join(dir, KUBELET_DATA_LINK);
  if (!exists(link)) return { base: dir, link: null };
  return { base: realpathSync(link), link };
}

function keyFiles(base: string): string[] {
  return readdirSync(base, { withFileTypes: true })
    .filter((e) => !isHiddenName(e.name))
    .filter((e) => {
      if (e.isFile()) return true;
      if (!e.isSymbolicLink()) return false;
      try {
        return statSync(join(base, e.name)).isFile();
      } catch {
        return false; // a dangling link during a swap: not a key
      }
    })
    .map((e) => e.name)
    .sort();
}

/**
 * A cheap fingerprint of the folder's current contents (the `..data` target, and every key file's inode, size and
 * times), compared on each scan so that only changed secrets are re-read and re-parsed.
 */
export function mountedSecretSignature(dir: string): string {
  try {
    const { base } = dataDir(dir);
    const parts = [`base=${base}`];
    for (const k of keyFiles(base)) parts.push(`${k}=${sig(statSync(join(base, k), { bigint: true }))}`);
    return parts.join('\n');
  } catch (err) {
    return `error:${describeError(err)}`;
  }
}

export type MountedSecretRead = { ok: true; secret: RawSecret } | { ok: false; name: string; problem: SecretProblem };

/**
 * Reads a mounted secret consistently: in the kubelet layout every key is read from the one `..data` target, and
 * the read is repeated when the link moved meanwhile, so a secret is never assembled from two versions. The
 * secret's name is the folder's; a mounted secret carries no annotations and no type (kubernetes.io/tls is
 * assumed when tls.crt and tls.key are there, as Kubernetes would have required).
 */
export function readMountedSecret(dir: string): MountedSecretRead {
  const name = basename(dir);
  let lastErr: unknown;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    try {
      const { base, link } = dataDir(dir);
      const data = new Map<string, Buffer>();
      for (const k of keyFiles(base)) {
        if (!SECRET_KEY_PATTERN.test(k)) continue;
        data.set(k, readFileSync(join(base, k)));
      }
      if (link && realpathSync(link) !== base) continue; // swapped while reading: read the new version
      const type = data.has('tls.crt') && data.has('tls.key') ? 'kubernetes.io/tls' : 'Opaque';
      return { ok: true, secret: { name, namespace: null, type, annotations: {}, data, source: dir, origin: dir, layout: 'mounted' } };
    } catch (err) {
      // ENOENT mid-swap (the old timestamped folder was just removed): try again from the new link.
      lastErr = err;
    }
  }
  const code = (lastErr as NodeJS.ErrnoException | undefined)?.code;
  const why = lastErr === undefined ? 'it kept changing while being read' : code === 'EACCES' ? 'permission denied' : describeError(lastErr);
  return { ok: false, name, problem: secretError('read', `${dir}: cannot read the mounted secret: ${why}`) };
}
