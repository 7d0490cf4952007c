// DESIGN.md's stapling table at handshake time. The staple of a certificate is judged once (parse, signature,
// CertID, status, freshness) and the verdict is cached with the instant it can next change (the staple's
// nextUpdate, or its thisUpdate when not yet valid); a handshake only compares the clock with that instant, so a
// staple that expires while the gateway runs stops being served (or, for PREFERRED and MANDATORY, stops the
// certificate being used) at the right moment without a restart and without re-validating on every handshake.
import { systemClock, type Clock } from '../core/index.js';
import { assessStaple, decideStapling, effectivePolicy, type GatewayAction, type OcspPolicy, type StapleState } from '../secrets/index.js';
import type { ServingCredential } from './credential-store.js';

export interface HandshakeStapling {
  /** 'staple' and 'serve-without-staple' serve the certificate; 'fail-handshake' refuses every handshake for it. */
  action: Exclude<GatewayAction, 'reject'>;
  /** The DER response to staple when the action is 'staple'. */
  staple: Buffer | null;
  state: StapleState;
  policy: OcspPolicy;
  reason: string;
  /** The staple's nextUpdate, when there is a staple that parsed. */
  nextUpdate: Date | null;
  /** When the verdict must be recomputed (ms since epoch), or null for never. */
  until: number | null;
}

/**
 * Judges serving credentials against the clock. A 'reject' of the table (MANDATORY without a valid staple) cannot
 * happen for a version the secrets source accepted, but can for one received over SDS or one whose staple expired
 * while in force: the certificate is then not used, as for 'fail-handshake'.
 */
export class StaplingCache {
  readonly #clock: Clock;
  readonly #verdicts = new WeakMap<ServingCredential, HandshakeStapling>();

  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  get clock(): Clock {
    return this.#clock;
  }

  decide(cred: ServingCredential): HandshakeStapling {
    const now = this.#clock.now();
    const hit = this.#verdicts.get(cred);
    if (hit && (hit.until === null || now.getTime() < hit.until)) return hit;
    const verdict = judge(cred, now);
    this.#verdicts.set(cred, verdict);
    return verdict;
  }
}

export function judge(cred: ServingCredential, at: Date): HandshakeStapling {
  const leaf = cred.chain[0]!;
  const policy = effectivePolicy(cred.declaredPolicy, leaf);
  const assessment = assessStaple({ cert: leaf, issuer: cred.issuer, staple: cred.staple, at, source: `credential ${cred.name} OCSP staple` });
  const decision = decideStapling(policy.policy, assessment.state);
  const action = decision.gateway.action === 'reject' ? 'fail-handshake' : decision.gateway.action;
  const reason = [decision.gateway.reason, ...assessment.reasons].join('; ');
  return {
    action,
    staple: action === 'staple' ? cred.staple : null,
    state: assessment.state,
    policy: policy.policy,
    reason,
    nextUpdate: assessment.nextUpdate ?? null,
    until: assessment.changesAt ? assessment.changesAt.getTime() : null,
  };
}
