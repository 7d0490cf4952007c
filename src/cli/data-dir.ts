import { resolve } from 'node:path';

/** `--data-dir`, else $MESHCERT_DATA_DIR, else ./.meshcert: the same rule for every command. */
export function resolveDataDir(option: string | undefined): string {
  return resolve(option ?? process.env.MESHCERT_DATA_DIR ?? '.meshcert');
}

export const DATA_DIR_HELP = 'data dir holding the CA and its ledger (default: $MESHCERT_DATA_DIR or ./.meshcert)';
