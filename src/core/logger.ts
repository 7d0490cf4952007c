import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The process logger: JSON lines on stderr (stdout belongs to command output). Keys and tokens are never passed
 * to it; the redact list is a second line of defence for fields that might carry them.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'meshcert',
      level: options.level ?? process.env.MESHCERT_LOG_LEVEL ?? 'info',
      redact: { paths: ['privateKey', '*.privateKey', 'key', '*.key', 'token', '*.token', 'authorization'], censor: '[redacted]' },
    },
    pino.destination(2),
  );
}

/** A logger that drops everything, for library use and tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
