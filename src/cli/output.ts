import { MeshError, isMeshError, describeError, ErrorCodes } from '../core/index.js';

/** Exit codes every command keeps: scripts rely on them. */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
}

/** Dates as ISO text, bigints as decimal strings, buffers as hex: JSON that other tools read without surprises. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return Buffer.from((value as { data: number[] }).data).toString('hex');
  }
  return value;
}

export function printText(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Prints a failure on stderr (JSON with --json) and returns the exit code: 2 for usage errors, 1 otherwise. */
export function reportError(err: unknown, json: boolean): number {
  const meshErr = isMeshError(err) ? err : new MeshError(ErrorCodes.INTERNAL, describeError(err), { cause: err });
  if (json) process.stderr.write(`${JSON.stringify({ error: meshErr.toJSON() }, jsonReplacer)}\n`);
  else process.stderr.write(`meshcert: error: ${meshErr.message} [${meshErr.code}]\n`);
  if (meshErr.code === ErrorCodes.INTERNAL && process.env.MESHCERT_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
  return meshErr.code === ErrorCodes.USAGE ? EXIT.USAGE : EXIT.FAILURE;
}

export function usageError(message: string): MeshError {
  return new MeshError(ErrorCodes.USAGE, message);
}
