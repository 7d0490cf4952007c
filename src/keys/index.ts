export { writeKeyFile, readKeyFile } from './file-keys.js';
export type { WriteKeyOptions, ReadKeyResult } from './file-keys.js';
