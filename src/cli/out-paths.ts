import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/**
 * Checks, before anything changes in the ledger, that `dir` is (or can be made as) a writable directory: bad
 * output paths must fail before a certificate is recorded or a CRL number is spent, never after.
 */
export function checkOutputDir(dir: string, option: string, given: string = dir): void {
  const target = resolve(dir);
  for (let p = target; ; p = dirname(p)) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && dirname(p) !== p) continue;
      throw new MeshError(ErrorCodes.FILE_WRITE, `${option} ${given}: cannot use ${p}: ${describeError(err)}`, { subject: given, cause: err });
    }
    if (!isDir) throw new MeshError(ErrorCodes.FILE_WRITE, `${option} ${given}: ${p} is not a directory`, { subject: given });
    try {
      accessSync(p, constants.W_OK | constants.X_OK);
    } catch (err) {
      throw new MeshError(ErrorCodes.FILE_WRITE, `${option} ${given}: ${p} is not writable: ${describeError(err)}`, { subject: given, cause: err });
    }
    return;
  }
}

/** The same for an output file: it may exist (it is replaced) but not as a directory, and its folder must do. */
export function checkOutputFile(file: string, option: string): void {
  try {
    if (statSync(file).isDirectory()) throw new MeshError(ErrorCodes.FILE_WRITE, `${option} ${file}: is a directory, not a file`, { subject: file });
  } catch (err) {
    if (err instanceof MeshError) throw err;
    // ENOENT is fine: the file is created; anything else shows up in the folder check or at write time.
  }
  checkOutputDir(dirname(resolve(file)), option, file);
}
