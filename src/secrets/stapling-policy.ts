import { ErrorCodes, MeshError } from '../core/index.js';
import { OcspResponse, verifyOcspResponse, type Certificate } from '../pki/index.js';

/**
 * The stapling policy of DESIGN.md ("Stapling policy", from the seeds' OCSP design): what meshcert's gateway does
 * with a certificate, and what goes over SDS to Envoy, by policy and by the state of the staple. Pure: the caller
 * gives the instant, so that a staple expiring while served is re-evaluated by simply calling again.
 */

export const OCSP_POLICY_ANNOTATION = 'kubernetes.io/ocsp-policy';
export const OCSP_POLICIES = ['OPTIONAL', 'PREFERRED', 'MANDATORY'] as const;
export type OcspPolicy = (typeof OCSP_POLICIES)[number];

/** Envoy's `DownstreamTlsContext.ocsp_staple_policy` for each annotation value. */
export type EnvoyStaplePolicy = 'LENIENT_STAPLING' | 'STRICT_STAPLING' | 'MUST_STAPLE';
export const ENVOY_STAPLE_POLICY: Readonly<Record<OcspPolicy, EnvoyStaplePolicy>> = {
  OPTIONAL: 'LENIENT_STAPLING',
  PREFERRED: 'STRICT_STAPLING',
  MANDATORY: 'MUST_STAPLE',
};

/** Reads the annotation value; case is forgiven, anything else is a configuration error naming the value. */
export function parseOcspPolicy(value: string, source = OCSP_POLICY_ANNOTATION): OcspPolicy {
  const v = value.trim().toUpperCase();
  if ((OCSP_POLICIES as readonly string[]).includes(v)) return v as OcspPolicy;
  throw new MeshError(ErrorCodes.CONFIG, `${source}: "${value}" is not a stapling policy; use one of ${OCSP_POLICIES.join(', ')}`, { subject: source });
}

export interface EffectivePolicy {
  policy: OcspPolicy;
  envoy: EnvoyStaplePolicy;
  /** What the secret (or the configuration) said, null when nothing did. */
  declared: OcspPolicy | null;
  /** The certificate carries the TLS feature status_request (RFC 7633): MANDATORY whatever was declared. */
  mustStaple: boolean;
  /** In words, for reports. */
  why: string;
}

/** No annotation means OPTIONAL (also with a staple present, as Istio 1.17+ does); must-staple forces MANDATORY. */
export function effectivePolicy(declared: OcspPolicy | null, cert: Certificate | null): EffectivePolicy {
  const mustStaple = cert?.mustStaple ?? false;
  const policy: OcspPolicy = mustStaple ? 'MANDATORY' : (declared ?? 'OPTIONAL');
  const why = mustStaple
    ? `MANDATORY because the certificate carries the must-staple extension${declared && declared !== 'MANDATORY' ? ` (overrides the declared ${declared})` : ''}`
    : declared
      ? `${declared} (declared)`
      : 'OPTIONAL (no policy declared)';
  return { policy, envoy: ENVOY_STAPLE_POLICY[policy], declared, mustStaple, why };
}

/** none: no staple; expired: right certificate and signer, but not current; broken: anything else wrong; valid. */
export type StapleState = 'none' | 'expired' | 'broken' | 'valid';

export interface StapleAssessment {
  state: StapleState;
  /** Why the staple is not valid, in words; empty for none and valid. */
  reasons: string[];
  status?: 'good' | 'revoked' | 'unknown';
  thisUpdate?: Date;
  nextUpdate?: Date | null;
  /** An "expired" staple whose thisUpdate is still ahead. */
  notYetValid?: boolean;
  /** When the state changes by the clock alone (a valid staple expires, a future one becomes current). */
  changesAt: Date | null;
}

export interface AssessStapleInput {
  cert: Certificate;
  /** The certificate's issuer; without it no signature can be checked and the staple is broken. */
  issuer: Certificate | null;
  staple: Uint8Array | null;
  at: Date;
  /** Names the staple in messages ("secret gw key tls.ocsp-staple"). */
  source?: string;
}

/**
 * DESIGN.md's staple rules: valid when it parses, is signed by the issuer (or its delegated OCSP signer), names
 * this certificate's serial and issuer with a SHA-1 or SHA-256 CertID, says good, and now lies between thisUpdate
 * and nextUpdate, with no clock-skew allowance, and with a response without nextUpdate expired at once, as Envoy
 * treats it. A response about more than one certificate is broken too: Envoy NACKs it.
 */
export function assessStaple(input: AssessStapleInput): StapleAssessment {
  const { cert, issuer, staple, at } = input;
  const source = input.source ?? 'OCSP staple';
  if (!staple || staple.length === 0) return { state: 'none', reasons: [], changesAt: null };
  let resp: OcspResponse;
  try {
    resp = OcspResponse.parse(staple, source);
  } catch (err) {
    return { state: 'broken', reasons: [(err as Error).message], changesAt: null };
  }
  if (resp.responseStatus === 'successful' && resp.responses.length !== 1) {
    return {
      state: 'broken',
      reasons: [`${source}: the response is about ${resp.responses.length} certificates; Envoy accepts a staple about exactly one`],
      changesAt: null,
    };
  }
  if (!issuer) {
    return {
      state: 'broken',
      reasons: [`${source}: the issuer of certificate ${cert.serial} ("${cert.issuer}") is neither in the chain nor in ca.crt, so the staple's signature cannot be checked; add the intermediate to the chain`],
      changesAt: null,
    };
  }
  const res = verifyOcspResponse(resp, { cert, issuer, at, maxClockSkewMs: 0, maxAgeWithoutNextUpdateMs: 0, requireGood: true, source });
  const times = {
    ...(res.status ? { status: res.status } : {}),
    ...(res.thisUpdate ? { thisUpdate: res.thisUpdate } : {}),
    ...(res.nextUpdate !== undefined ? { nextUpdate: res.nextUpdate } : {}),
  };
  if (res.ok) {
    return { state: 'valid', reasons: [], ...times, changesAt: res.nextUpdate ? new Date(res.nextUpdate.getTime() + 1) : null };
  }
  const broken = res.reasons.filter((r) => r.code !== 'freshness');
  if (broken.length) return { state: 'broken', reasons: broken.map((r) => r.message), ...times, changesAt: null };
  const notYetValid = !!res.thisUpdate && res.thisUpdate.getTime() > at.getTime();
  const reasons = res.nextUpdate === null ? [`${source}: has no nextUpdate; Envoy treats such a staple as expired`] : res.reasons.map((r) => r.message);
  return { state: 'expired', reasons, ...times, ...(notYetValid ? { notYetValid: true } : {}), changesAt: notYetValid ? res.thisUpdate! : null };
}

/** What meshcert's own gateway does (DESIGN.md's first table). */
export type GatewayAction =
  /** Serve the certificate and staple the response. */
  | 'staple'
  /** Serve the certificate without a staple. */
  | 'serve-without-staple'
  /** The configuration is accepted, but the certificate is not used: handshakes for it fail. */
  | 'fail-handshake'
  /** The configuration is rejected: this version is invalid, the last good one stays. */
  | 'reject';

/** What goes over SDS to Envoy for the `kubernetes://NAME` resource. */
export type SdsAction = 'send-with-staple' | 'send-without-staple' | 'withhold';

export interface StaplingDecision {
  gateway: { action: GatewayAction; reason: string };
  sds: { action: SdsAction; reason: string };
}

const G = (action: GatewayAction, reason: string) => ({ action, reason });
const S = (action: SdsAction, reason: string) => ({ action, reason });

/**
 * DESIGN.md's table, cell by cell. Envoy NACKs a staple that does not parse or does not match its certificate
 * under every policy, and under LENIENT/STRICT would staple a revoked or badly signed response it cannot judge,
 * hence the SDS column: OPTIONAL drops what is not valid, PREFERRED withholds what is broken and sends what is
 * merely expired (STRICT_STAPLING then refuses the certificate), MANDATORY withholds what has no staple or a broken
 * one and sends an expired one as it is (MUST_STAPLE then fails the handshake).
 */
export const STAPLING_TABLE: Readonly<Record<OcspPolicy, Readonly<Record<StapleState, StaplingDecision>>>> = {
  OPTIONAL: {
    none: { gateway: G('serve-without-staple', 'no staple'), sds: S('send-without-staple', 'no staple') },
    expired: {
      gateway: G('serve-without-staple', 'the staple is expired; served without it'),
      sds: S('send-without-staple', 'the staple is expired; sent without it'),
    },
    broken: {
      gateway: G('serve-without-staple', 'the staple is broken; served without it'),
      sds: S('send-without-staple', 'the staple is broken; sent without it'),
    },
    valid: { gateway: G('staple', 'valid staple'), sds: S('send-with-staple', 'valid staple') },
  },
  PREFERRED: {
    none: { gateway: G('serve-without-staple', 'no staple'), sds: S('send-without-staple', 'no staple') },
    expired: {
      gateway: G('fail-handshake', 'PREFERRED policy with an expired staple: the certificate is not used'),
      sds: S('send-with-staple', "the expired staple is sent as it is; Envoy's STRICT_STAPLING refuses the certificate"),
    },
    broken: {
      gateway: G('fail-handshake', 'PREFERRED policy with a broken staple: the certificate is not used'),
      sds: S('withhold', 'PREFERRED policy with a broken staple: withheld; Envoy keeps the last version it accepted'),
    },
    valid: { gateway: G('staple', 'valid staple'), sds: S('send-with-staple', 'valid staple') },
  },
  MANDATORY: {
    none: {
      gateway: G('reject', 'MANDATORY policy but no OCSP staple'),
      sds: S('withhold', 'MANDATORY policy but no OCSP staple: withheld; Envoy keeps the last version it accepted'),
    },
    expired: {
      gateway: G('fail-handshake', 'MANDATORY policy with an expired staple: the certificate is not used'),
      sds: S('send-with-staple', "the expired staple is sent as it is; Envoy's MUST_STAPLE fails the handshake"),
    },
    broken: {
      gateway: G('reject', 'MANDATORY policy with a broken OCSP staple'),
      sds: S('withhold', 'MANDATORY policy with a broken OCSP staple: withheld; Envoy keeps the last version it accepted'),
    },
    valid: { gateway: G('staple', 'valid staple'), sds: S('send-with-staple', 'valid staple') },
  },
};

export function decideStapling(policy: OcspPolicy, state: StapleState): StaplingDecision {
  return STAPLING_TABLE[policy][state];
}

/** True when the gateway's action serves the certificate at all. */
export function gatewayServes(action: GatewayAction): boolean {
  return action === 'staple' || action === 'serve-without-staple';
}
