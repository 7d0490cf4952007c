// An external policy service as a peer validator (issue #9): POST the chain and the connection facts as JSON, expect
// `{"allow": bool, "reason": "…"}`. No retries: a validator that is down answers with failOpen's verdict.
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { PeerValidator, ValidationInput, ValidatorResult } from './peer-validation.js';

export interface HttpValidatorOptions {
  url: string;
  timeoutMs: number;
  failOpen: boolean;
  /** Trust for an https: validator; Node's default roots when absent. */
  ca?: string;
  /** Cap on the answer's size; default 16 KiB. */
  maxResponseBytes?: number;
}

class ValidatorFailed extends Error {}

export class HttpValidator implements PeerValidator {
  readonly name = 'http';
  readonly #options: HttpValidatorOptions;
  readonly #url: URL;
  // Kept-alive connections: a validator answers every new client connection, so reconnecting each time would double
  // its latency.
  readonly #agent: HttpAgent;

  constructor(options: HttpValidatorOptions) {
    this.#options = options;
    this.#url = new URL(options.url);
    this.#agent =
      this.#url.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxSockets: 1024, ...(options.ca ? { ca: options.ca } : {}) })
        : new HttpAgent({ keepAlive: true, maxSockets: 1024 });
  }

  async validate(input: ValidationInput): Promise<ValidatorResult> {
    const body = JSON.stringify({
      chain: input.chain.map((c) => c.pem),
      sni: input.sni ?? '',
      alpn: input.alpn || '',
      remoteAddress: input.remoteAddress,
    });
    try {
      const answer = await this.#post(body);
      if (answer.allow) return { allowed: true };
      const said = answer.reason ? `: ${answer.reason}` : '';
      return { allowed: false, reason: 'http_denied', detail: `validator ${this.#url.origin} denied the client${said}` };
    } catch (err) {
      const detail = `validator ${this.#options.url}: ${(err as Error).message}`;
      return this.#options.failOpen ? { allowed: true, note: detail } : { allowed: false, reason: 'http_error', detail };
    }
  }

  close(): void {
    this.#agent.destroy();
  }

  #post(body: string): Promise<{ allow: boolean; reason?: string }> {
    const max = this.#options.maxResponseBytes ?? 16 * 1024;
    const send = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(this.#url, {
        method: 'POST',
        agent: this.#agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      const timer = setTimeout(() => req.destroy(new ValidatorFailed(`no answer within ${this.#options.timeoutMs} ms`)), this.#options.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err instanceof ValidatorFailed ? err : new ValidatorFailed(`unreachable: ${err.message}`));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > max) req.destroy(new ValidatorFailed(`answer larger than ${max} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          if (res.statusCode !== 200) return reject(new ValidatorFailed(`answered HTTP ${res.statusCode}`));
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new ValidatorFailed('answered something that is not JSON'));
          }
          const o = parsed as { allow?: unknown; reason?: unknown };
          if (typeof o !== 'object' || o === null || typeof o.allow !== 'boolean') {
            return reject(new ValidatorFailed('answer has no boolean "allow"'));
          }
          resolve({ allow: o.allow, ...(typeof o.reason === 'string' ? { reason: o.reason.slice(0, 200) } : {}) });
        });
      });
      req.end(body);
    });
  }
}
