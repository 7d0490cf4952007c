import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';

/** One audit line. Requests: what was asked and answered; connections: spliced, refused or failed ones. */
export interface AuditRecord {
  time: string;
  event: 'request' | 'splice' | 'refused' | 'error';
  client: string;
  sni: string | null;
  method?: string;
  url?: string;
  status?: number;
  /** Response body bytes sent to the client (requests), or bytes both ways (splices). */
  bytes?: number;
  /** Serial (hex) of the mimic certificate the client saw. */
  mimicSerial?: string | null;
  /** The filter decision or the error, when there is one. */
  reason?: string;
  protocol?: string;
  [key: string]: unknown;
}

export interface AuditSink {
  write(record: Omit<AuditRecord, 'time'>): void;
  close(): Promise<void>;
}

export const noAudit: AuditSink = { write: () => undefined, close: async () => undefined };

/** JSON lines appended to a file (created 0640), one per request or connection event. */
export class AuditLog implements AuditSink {
  readonly #stream: WriteStream;
  #failed: Error | null = null;

  constructor(
    readonly path: string,
    onError: (err: Error) => void = () => undefined,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.#stream = createWriteStream(path, { flags: 'a', mode: 0o640 });
    this.#stream.on('error', (err) => {
      if (!this.#failed) onError(err);
      this.#failed = err;
    });
  }

  write(record: Omit<AuditRecord, 'time'>): void {
    if (this.#failed) return;
    this.#stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#stream.end(() => resolve()));
  }
}
