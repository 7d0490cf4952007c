// The asynchronous half of client-certificate validation (issue #9). Node cannot pause a handshake for a custom
// verifier, so validators run right after it while the connection's data is held (the proxy sends nothing upstream
// until the admission settles). Results follow Envoy's validators: Successful | Failed with a reason; a validator
// that does not answer in time is Failed unless configured to fail open.
import { Counter, Histogram, type Registry } from 'prom-client';
import type { GatewayOptionsSpec, ValidationConfig } from '../config/index.js';
import type { Clock } from '../core/index.js';
import type { Certificate } from '../pki/index.js';
import type { Admission } from './connection-context.js';
import { HttpValidator } from './http-validator.js';
import { OcspValidator } from './ocsp-validator.js';

/** What a validator sees of a connection: the verified chain (leaf first) and the connection facts. */
export interface ValidationInput {
  chain: Certificate[];
  sni: string | undefined;
  alpn: string | false;
  remoteAddress: string;
}

export type ValidatorResult =
  | { allowed: true; /** why it allowed despite a problem (fail-open), for the log */ note?: string }
  | { allowed: false; /** a stable snake_case reason: metric label and access-log field */ reason: string; detail: string };

export interface PeerValidator {
  readonly name: string;
  validate(input: ValidationInput): Promise<ValidatorResult>;
  close?(): void;
}

export interface ValidationEvent {
  validator: string;
  result: ValidatorResult;
  durationMs: number;
  input: ValidationInput;
}

export interface PeerValidationOptions {
  /** Per-validator guard: past this, the validator is Failed (or allowed when failOpen). */
  timeoutMs?: Record<string, number>;
  failOpen?: Record<string, boolean>;
  metrics?: PeerValidationMetrics;
  onResult?: (event: ValidationEvent) => void;
}

/** Counters per validator and reason, as Envoy keeps one counter per failure reason. */
export class PeerValidationMetrics {
  readonly results: Counter<'validator' | 'result' | 'reason'>;
  readonly duration: Histogram<'validator'>;
  constructor(registry: Registry) {
    this.results = new Counter({
      name: 'meshcert_gateway_peer_validations_total',
      help: 'Asynchronous client-certificate validations, by validator, result (allowed/denied) and reason',
      labelNames: ['validator', 'result', 'reason'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'meshcert_gateway_peer_validation_seconds',
      help: 'Time an asynchronous validator took to answer',
      labelNames: ['validator'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers: [registry],
    });
  }
}

/** Runs every validator of a server at once; the first denial decides, otherwise all must allow. */
export class PeerValidationPipeline {
  readonly #validators: PeerValidator[];
  readonly #options: PeerValidationOptions;

  constructor(validators: PeerValidator[], options: PeerValidationOptions = {}) {
    this.#validators = validators;
    this.#options = options;
  }

  get validators(): readonly PeerValidator[] {
    return this.#validators;
  }

  admit(input: ValidationInput): Promise<Admission> {
    if (this.#validators.length === 0) return Promise.resolve({ allowed: true });
    return new Promise((resolve) => {
      let pending = this.#validators.length;
      let settled = false;
      for (const v of this.#validators) {
        void this.#run(v, input).then((result) => {
          if (settled) return;
          if (!result.allowed) {
            settled = true;
            resolve({ allowed: false, reason: result.detail });
          } else if (--pending === 0) {
            settled = true;
            resolve({ allowed: true });
          }
        });
      }
    });
  }

  close(): void {
    for (const v of this.#validators) v.close?.();
  }

  async #run(v: PeerValidator, input: ValidationInput): Promise<ValidatorResult> {
    const started = performance.now();
    const guardMs = this.#options.timeoutMs?.[v.name];
    let timer: NodeJS.Timeout | undefined;
    const guard =
      guardMs === undefined
        ? undefined
        : new Promise<ValidatorResult>((resolve) => {
            timer = setTimeout(() => {
              const detail = `validator ${v.name} did not answer within ${guardMs} ms`;
              resolve(this.#options.failOpen?.[v.name] ? { allowed: true, note: detail } : { allowed: false, reason: `${v.name}_timeout`, detail });
            }, guardMs);
          });
    let result: ValidatorResult;
    try {
      const run = v.validate(input).catch(
        (err: unknown): ValidatorResult => ({ allowed: false, reason: `${v.name}_error`, detail: `validator ${v.name} failed: ${(err as Error).message}` }),
      );
      result = guard ? await Promise.race([run, guard]) : await run;
    } finally {
      if (timer) clearTimeout(timer);
    }
    const durationMs = performance.now() - started;
    const m = this.#options.metrics;
    if (m) {
      m.results.inc({ validator: v.name, result: result.allowed ? 'allowed' : 'denied', reason: result.allowed ? (result.note ? 'fail_open' : 'ok') : result.reason });
      m.duration.observe({ validator: v.name }, durationMs / 1000);
    }
    this.#options.onResult?.({ validator: v.name, result, durationMs, input });
    return result;
  }
}

/** The validation entries that apply to a server port: those naming it, and those without a port. */
export function validationFor(options: GatewayOptionsSpec, port: number): ValidationConfig[] {
  return options.validation.filter((v) => v.port === undefined || v.port === port);
}

/**
 * Builds the pipeline of one server port from GatewayOptions.validation, or undefined when nothing applies.
 * The OCSP validator is shared across ports (one cache for the gateway); pass it in to keep it across reloads.
 */
export function buildPeerValidation(
  configs: ValidationConfig[],
  shared: { ocsp?: (c: NonNullable<ValidationConfig['ocsp']>) => OcspValidator; clock?: Clock; metrics?: PeerValidationMetrics; onResult?: (e: ValidationEvent) => void } = {},
): PeerValidationPipeline | undefined {
  const validators: PeerValidator[] = [];
  const timeoutMs: Record<string, number> = {};
  const failOpen: Record<string, boolean> = {};
  // Durations in the validated config are milliseconds.
  const ms = (d: number): number => d;
  for (const c of configs) {
    if (c.ocsp && !validators.some((v) => v.name === 'ocsp')) {
      const o = c.ocsp;
      validators.push(shared.ocsp ? shared.ocsp(o) : new OcspValidator({ timeoutMs: ms(o.timeout), onUnknown: o.onUnknown, onError: o.onError, ...(shared.clock ? { clock: shared.clock } : {}) }));
      // The responder fetch has its own timeout; the guard only catches a validator that hangs past it.
      timeoutMs.ocsp = ms(o.timeout) + 250;
      failOpen.ocsp = o.onError === 'allow';
    }
    if (c.http && !validators.some((v) => v.name === 'http')) {
      const h = c.http;
      validators.push(new HttpValidator({ url: h.url, timeoutMs: ms(h.timeout), failOpen: h.failOpen }));
      timeoutMs.http = ms(h.timeout) + 250;
      failOpen.http = h.failOpen;
    }
  }
  if (validators.length === 0) return undefined;
  return new PeerValidationPipeline(validators, {
    timeoutMs,
    failOpen,
    ...(shared.metrics ? { metrics: shared.metrics } : {}),
    ...(shared.onResult ? { onResult: shared.onResult } : {}),
  });
}
