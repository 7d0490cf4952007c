/**
 * What every secret source (manifest files, mounted folders) produces before any certificate is parsed: a name,
 * a type, annotations and the data keys as bytes, as the Kubernetes API holds them.
 */
export interface RawSecret {
  /** metadata.name, or the folder name of a mounted secret. */
  name: string;
  namespace: string | null;
  /** `kubernetes.io/tls`, `Opaque`… A manifest without `type` is `Opaque`, as in Kubernetes. */
  type: string;
  annotations: Record<string, string>;
  /** Data keys (`tls.crt`, `tls.key`…) to their bytes, `stringData` already merged in. */
  data: Map<string, Buffer>;
  /** Where it came from, for messages: "secrets/gw.yaml (document 2)" or the mounted folder. */
  source: string;
  /** The file or folder it was read from: the unit that is re-read when it changes. */
  origin: string;
  layout: 'manifest' | 'mounted';
}

/** Stable problem codes of a secret: scripts and tests match on them, messages are for people. */
export type SecretProblemCode =
  | 'read'
  | 'manifest'
  | 'name'
  | 'duplicate'
  | 'type'
  | 'keys'
  | 'certificate'
  | 'privateKey'
  | 'keyMismatch'
  | 'chain'
  | 'validity'
  | 'policy'
  | 'staple'
  | 'ca'
  | 'crl';

export interface SecretProblem {
  /** An error makes the version invalid (the last good one stays served); a warning is reported only. */
  severity: 'error' | 'warning';
  code: SecretProblemCode;
  message: string;
  /** The data key at fault, when there is one. */
  key?: string;
}

export function secretError(code: SecretProblemCode, message: string, key?: string): SecretProblem {
  return key === undefined ? { severity: 'error', code, message } : { severity: 'error', code, message, key };
}

export function secretWarning(code: SecretProblemCode, message: string, key?: string): SecretProblem {
  return key === undefined ? { severity: 'warning', code, message } : { severity: 'warning', code, message, key };
}

/** Secret data keys as Kubernetes allows them (validation.IsConfigMapKey). */
export const SECRET_KEY_PATTERN = /^[-._a-zA-Z0-9]+$/;

/** A DNS-1123 subdomain, what Kubernetes accepts as a Secret name. */
export function isValidSecretName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name);
}
