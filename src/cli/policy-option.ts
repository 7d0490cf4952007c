import { parseOcspPolicy, type OcspPolicy } from '../secrets/index.js';
import { usageError } from './output.js';

/**
 * `--policy NAME=POLICY` (repeatable): the stapling policy of a secret that carries no kubernetes.io/ocsp-policy
 * annotation (mounted folders, SDS), as serve's sds.ocspPolicies.
 */
export function collectPolicy(value: string, previous: Record<string, OcspPolicy> = {}): Record<string, OcspPolicy> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw usageError(`--policy: "${value}" is not NAME=POLICY (e.g. --policy gw=MANDATORY)`);
  try {
    return { ...previous, [value.slice(0, eq)]: parseOcspPolicy(value.slice(eq + 1), `--policy ${value.slice(0, eq)}`) };
  } catch (err) {
    throw usageError((err as Error).message);
  }
}
