import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { describeError } from '../core/index.js';
import { SECRET_KEY_PATTERN, isValidSecretName, secretError, type RawSecret, type SecretProblem } from './raw-secret.js';

/** A problem found in a manifest file: a document that is not a usable Secret, or the file itself. */
export interface ManifestProblem {
  /** "secrets/gw.yaml (document 2)", or the file for file-level problems. */
  source: string;
  /** The secret's name when the document got far enough to have one. */
  name?: string;
  problem: SecretProblem;
}

export interface ParsedManifests {
  secrets: RawSecret[];
  /** Per-document problems; those documents produce no secret. */
  problems: ManifestProblem[];
  /** Documents of other kinds (ConfigMap, Deployment…), which a folder of manifests may well hold. */
  ignored: string[];
  /** Set when the file as a whole is unusable (not YAML/JSON, unreadable): then nothing of it is trusted. */
  fileError?: SecretProblem;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Reads Kubernetes Secret manifests as `kubectl get secret -o yaml|json` prints them: YAML or JSON, several
 * documents per file, `kind: List` wrappers, `data` in base64 and `stringData` in clear (merged over `data`, as
 * the API server does). A document with a mistake is reported and skipped; the others still count. A file that is
 * not YAML at all is a file error, so that its secrets keep their last good version instead of vanishing.
 */
export function parseSecretManifests(text: string, file: string): ParsedManifests {
  const out: ParsedManifests = { secrets: [], problems: [], ignored: [] };
  let docs;
  try {
    docs = parseAllDocuments(text, { uniqueKeys: true });
  } catch (err) {
    out.fileError = secretError('manifest', `${file}: not valid YAML or JSON: ${describeError(err)}`);
    return out;
  }
  const list = Array.isArray(docs) ? docs : [docs];
  const broken = list.find((d) => d.errors.length > 0);
  if (broken) {
    // One broken document usually means the file is mid-edit: trust none of it rather than guess.
    const e = broken.errors[0]!;
    const line = e.linePos?.[0]?.line;
    out.fileError = secretError('manifest', `${file}${line ? `:${line}` : ''}: not valid YAML or JSON: ${e.message.split('\n')[0]}`);
    return out;
  }
  const multi = list.length > 1;
  list.forEach((doc, i) => {
    const where = multi ? `${file} (document ${i + 1})` : file;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      out.problems.push({ source: where, problem: secretError('manifest', `${where}: ${describeError(err)}`) });
      return;
    }
    if (value === null || value === undefined) return; // an empty document, e.g. after a trailing ---
    collect(value, where, out);
  });
  return out;
}

function collect(value: unknown, where: string, out: ParsedManifests): void {
  if (!isRecord(value)) {
    out.problems.push({ source: where, problem: secretError('manifest', `${where}: expected a mapping (a Kubernetes object), found ${Array.isArray(value) ? 'a list' : typeof value}`) });
    return;
  }
  const kind = value.kind;
  if (typeof kind === 'string' && kind.endsWith('List') && Array.isArray(value.items)) {
    value.items.forEach((item, j) => collect(item, `${where} items[${j}]`, out));
    return;
  }
  if (kind !== 'Secret') {
    out.ignored.push(`${where}: ${typeof kind === 'string' ? `a ${kind}` : 'an object without kind'}, not a Secret`);
    return;
  }
  const res = secretFromObject(value, where);
  if ('problems' in res) out.problems.push(...res.problems.map((problem) => ({ source: where, ...(res.name ? { name: res.name } : {}), problem })));
  else out.secrets.push(res.secret);
}

function secretFromObject(obj: Record<string, unknown>, where: string): { secret: RawSecret } | { problems: SecretProblem[]; name?: string } {
  const problems: SecretProblem[] = [];
  const meta = obj.metadata;
  const name = isRecord(meta) && typeof meta.name === 'string' ? meta.name : undefined;
  if (!isRecord(meta)) problems.push(secretError('name', `${where}: metadata is missing`));
  else if (name === undefined) problems.push(secretError('name', `${where}: metadata.name is missing`));
  else if (!isValidSecretName(name)) {
    problems.push(secretError('name', `${where}: metadata.name "${name}" is not a valid Secret name (lowercase letters, digits, "-" and ".")`));
  }
  const namespace = isRecord(meta) && typeof meta.namespace === 'string' ? meta.namespace : null;

  const annotations: Record<string, string> = {};
  const rawAnn = isRecord(meta) ? meta.annotations : undefined;
  if (rawAnn !== undefined && rawAnn !== null) {
    if (!isRecord(rawAnn)) problems.push(secretError('manifest', `${where}: metadata.annotations must be a mapping of strings`));
    else {
      for (const [k, v] of Object.entries(rawAnn)) {
        if (typeof v !== 'string') problems.push(secretError('manifest', `${where}: metadata.annotations["${k}"] must be a string (quote it)`));
        else annotations[k] = v;
      }
    }
  }

  let type = 'Opaque';
  if (obj.type !== undefined && obj.type !== null) {
    if (typeof obj.type !== 'string' || obj.type === '') problems.push(secretError('type', `${where}: type must be a non-empty string`));
    else type = obj.type;
  }

  const data = new Map<string, Buffer>();
  const checkKey = (field: string, k: string): boolean => {
    if (SECRET_KEY_PATTERN.test(k) && k.length <= 253) return true;
    problems.push(secretError('keys', `${where}: ${field} key "${k}" is not a valid Secret key (letters, digits, "-", "_" and ".")`, k));
    return false;
  };
  if (obj.data !== undefined && obj.data !== null) {
    if (!isRecord(obj.data)) problems.push(secretError('manifest', `${where}: data must be a mapping of key to base64 text`));
    else {
      for (const [k, v] of Object.entries(obj.data)) {
        if (!checkKey('data', k)) continue;
        if (v === null) {
          data.set(k, Buffer.alloc(0));
          continue;
        }
        // Go's base64 decoder (what the API server uses) skips line breaks; anything else must be base64.
        const b64 = typeof v === 'string' ? v.replace(/[\r\n]/g, '') : null;
        if (b64 === null || !BASE64.test(b64) || b64.length % 4 !== 0) {
          problems.push(secretError('manifest', `${where}: data["${k}"] is not base64; put clear text under stringData instead`, k));
          continue;
        }
        data.set(k, Buffer.from(b64, 'base64'));
      }
    }
  }
  if (obj.stringData !== undefined && obj.stringData !== null) {
    if (!isRecord(obj.stringData)) problems.push(secretError('manifest', `${where}: stringData must be a mapping of key to text`));
    else {
      for (const [k, v] of Object.entries(obj.stringData)) {
        if (!checkKey('stringData', k)) continue;
        if (typeof v !== 'string') {
          problems.push(secretError('manifest', `${where}: stringData["${k}"] must be a string`, k));
          continue;
        }
        data.set(k, Buffer.from(v, 'utf8'));
      }
    }
  }
  if (problems.length) return name !== undefined ? { problems, name } : { problems };
  return {
    secret: { name: name!, namespace, type, annotations, data, source: where, origin: where, layout: 'manifest' },
  };
}

/** Reads and parses one manifest file; an unreadable file is a file error, never a throw. */
export function loadManifestFile(file: string): ParsedManifests {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : describeError(err);
    return { secrets: [], problems: [], ignored: [], fileError: secretError('read', `${file}: cannot read: ${why}`) };
  }
  const parsed = parseSecretManifests(text, file);
  for (const s of parsed.secrets) s.origin = file;
  return parsed;
}

export function isManifestFileName(name: string): boolean {
  return !name.startsWith('.') && /\.(ya?ml|json)$/i.test(name);
}
