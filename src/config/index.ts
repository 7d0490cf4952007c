export { fieldPath, configError } from './config-errors.js';
export { duration, listenAddress, httpUrl } from './fields.js';
export type { ListenAddress } from './fields.js';
export { serveConfigSchema, defaultServeConfig, parseServeConfig, loadServeConfig } from './serve-config.js';
export type { ServeConfig } from './serve-config.js';
export { sdsConfigSchema, type SdsConfig } from './sds-config.js';
