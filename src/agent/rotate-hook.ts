import { spawn } from 'node:child_process';
import { silentLogger, type Logger } from '../core/index.js';

/** What the command is told, in its environment. */
export interface RotateEvent {
  /** certificate: a new certificate; trust-bundle: only the trust bundle changed. */
  reason: 'certificate' | 'trust-bundle';
  spiffeId: string;
  serial: string;
  notAfter: Date;
  outDir: string | null;
  sdsUds: string | null;
}

/**
 * The --on-rotate command: run with /bin/sh -c after each rotation, once the files are in place and SDS has been
 * pushed, with MESHCERT_* variables describing what changed. Runs never overlap: a rotation during a run queues one
 * more run (with the latest event). A run that takes longer than `timeoutMs` is stopped (SIGTERM). Its output goes
 * to the agent's stderr; its exit status to the log and metrics. A failure never affects the certificate.
 */
export class RotateHook {
  #running = false;
  #queued: RotateEvent | null = null;
  #idle: Array<() => void> = [];

  constructor(
    readonly command: string,
    private readonly logger: Logger = silentLogger,
    private readonly onResult: (ok: boolean) => void = () => undefined,
    private readonly timeoutMs = 60_000,
  ) {}

  trigger(event: RotateEvent): void {
    if (this.#running) {
      this.#queued = event;
      return;
    }
    this.#run(event);
  }

  /** Resolves when no run is in progress or queued (for tests and shutdown). */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #run(event: RotateEvent): void {
    this.#running = true;
    const env = {
      ...process.env,
      MESHCERT_ROTATION: event.reason,
      MESHCERT_SPIFFE_ID: event.spiffeId,
      MESHCERT_SERIAL: event.serial,
      MESHCERT_NOT_AFTER: event.notAfter.toISOString(),
      MESHCERT_OUT_DIR: event.outDir ?? '',
      MESHCERT_SDS_UDS: event.sdsUds ?? '',
    };
    const started = Date.now();
    const child = spawn('/bin/sh', ['-c', this.command], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    const timer = setTimeout(() => child.kill('SIGTERM'), this.timeoutMs);
    timer.unref();
    let finished = false;
    const done = (ok: boolean, how: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.onResult(ok);
      const fields = { command: this.command, reason: event.reason, serial: event.serial, ms: Date.now() - started, result: how };
      if (ok) this.logger.info(fields, `--on-rotate command finished (${how})`);
      else this.logger.warn(fields, `--on-rotate command failed (${how}); the certificate is in place all the same`);
      this.#running = false;
      const next = this.#queued;
      this.#queued = null;
      if (next) this.#run(next);
      else for (const resolve of this.#idle.splice(0)) resolve();
    };
    child.once('error', (err) => done(false, `could not start: ${err.message}`));
    child.once('exit', (code, signal) => done(code === 0, signal ? `killed by ${signal}` : `exit ${code}`));
  }
}
