import { readFileSync, statSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError, describeError, writeFileAtomic } from '../core/index.js';
import { exportPrivateKeyPem, parsePrivateKey } from '../pki/index.js';

export interface WriteKeyOptions {
  /** Encrypts the PKCS#8 under this passphrase (PBES2: PBKDF2 + AES-256-CBC, as openssl pkcs8 reads it). */
  passphrase?: string;
  exclusive?: boolean;
}

/** Writes a private key as PKCS#8 PEM, mode 0600, atomically; the key never passes through a world-readable file. */
export function writeKeyFile(path: string, key: KeyObject, options: WriteKeyOptions = {}): void {
  const pem = options.passphrase
    ? (key.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: options.passphrase }) as string)
    : exportPrivateKeyPem(key);
  const prev = process.umask(0o077);
  try {
    writeFileAtomic(path, pem, { mode: 0o600, exclusive: options.exclusive ?? false });
  } finally {
    process.umask(prev);
  }
}

export interface ReadKeyResult {
  key: KeyObject;
  /** Set when the file can be read by group or others: callers warn, since a CA key must stay private. */
  looseMode: number | null;
}

/** Reads a private key file (PKCS#8, PKCS#1, SEC1; encrypted PKCS#8 with a passphrase); errors name the file. */
export function readKeyFile(path: string, passphrase?: string): ReadKeyResult {
  let data: Buffer;
  let mode: number;
  try {
    data = readFileSync(path);
    mode = statSync(path).mode & 0o777;
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${path}: cannot read private key: ${describeError(err)}`, { subject: path, cause: err });
  }
  const key = parsePrivateKey(data, path, passphrase);
  return { key, looseMode: (mode & 0o077) !== 0 ? mode : null };
}
