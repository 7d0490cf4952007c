import type { z } from 'zod';
import { ErrorCodes, MeshError } from '../core/index.js';

/** "grpc.listen", "auth.jwt[0].issuer": the path a user looks for in their YAML. */
export function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || '(top level)';
}

/** One MeshError listing every problem of a config file, each with its field path. */
export function configError(file: string, error: z.ZodError): MeshError {
  const lines = error.issues.map((i) => {
    const at = fieldPath(i.path);
    if (i.code === 'unrecognized_keys') {
      const keys = (i as { keys: string[] }).keys;
      return `${at === '(top level)' ? '' : `${at}.`}${keys.join(', ')}: unknown field${keys.length > 1 ? 's' : ''}`;
    }
    return `${at}: ${i.message}`;
  });
  return new MeshError(ErrorCodes.CONFIG, `${file}: invalid configuration:\n  - ${lines.join('\n  - ')}`, {
    subject: file,
    details: { problems: lines },
  });
}
