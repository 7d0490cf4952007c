export { ErrorCodes, MeshError, isMeshError, describeError } from './errors.js';
export type { ErrorCode, MeshErrorOptions } from './errors.js';
export { systemClock, ManualClock, wholeSeconds } from './clock.js';
export type { Clock } from './clock.js';
export { parseDuration, formatDuration } from './duration.js';
export { createLogger, silentLogger } from './logger.js';
export type { Logger } from './logger.js';
export { writeFileAtomic } from './atomic-file.js';
export type { AtomicWriteOptions } from './atomic-file.js';
