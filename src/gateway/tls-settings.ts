// A Gateway server's TLS settings (Istio's names, plus GatewayOptions' curves and signature algorithms) turned into
// node:tls secure-context options. Each server gets its own tls.Server with these options, so that one port can
// serve TLS 1.3 only on one host and TLS 1.2 with a cipher list on another (SNICallback could swap only the key).
import type { SecureContextOptions, SecureVersion } from 'node:tls';

/** What one server asks for, in Istio/Envoy spelling (validated by src/config). */
export interface TlsSettingsInput {
  minProtocolVersion?: string | undefined;
  maxProtocolVersion?: string | undefined;
  /** TLS 1.2 and older suites (OpenSSL names); TLS 1.3 suites are not configurable, as in Envoy. */
  cipherSuites?: readonly string[] | undefined;
  /** Envoy's curve names: X25519, P-256, P-384, P-521. */
  ecdhCurves?: readonly string[] | undefined;
  /** TLS signature scheme names (ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256…). */
  signatureAlgorithms?: readonly string[] | undefined;
}

export interface NodeTlsSettings {
  options: Pick<SecureContextOptions, 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve' | 'sigalgs'>;
  /** Settings that are accepted but have no effect, in words (e.g. cipher suites with TLS 1.3 only). */
  warnings: string[];
}

const VERSIONS: Readonly<Record<string, SecureVersion | undefined>> = {
  TLS_AUTO: undefined,
  TLSV1_0: 'TLSv1',
  TLSV1_1: 'TLSv1.1',
  TLSV1_2: 'TLSv1.2',
  TLSV1_3: 'TLSv1.3',
};

/** Envoy curve names → OpenSSL group names (Node's ecdhCurve, `openssl s_client -groups`). */
const CURVES: Readonly<Record<string, string>> = { X25519: 'X25519', 'P-256': 'P-256', 'P-384': 'P-384', 'P-521': 'P-521' };

/** Istio's defaults: TLS 1.2 up to TLS 1.3 for servers (Node's own defaults too). */
const DEFAULT_MIN: SecureVersion = 'TLSv1.2';

function version(name: string | undefined, field: string): SecureVersion | undefined {
  if (name === undefined) return undefined;
  const key = name.toUpperCase();
  if (!(key in VERSIONS)) throw new Error(`${field}: "${name}" is not a TLS version (TLS_AUTO, TLSV1_0 … TLSV1_3)`);
  return VERSIONS[key];
}

/**
 * Node secure-context options for one server. The inputs were validated by the config schemas; unknown names
 * still throw (a programming error, not user input). Cipher suites only constrain TLS ≤ 1.2 (Node keeps its TLS 1.3
 * suites when the list names none), so asking for them with TLS 1.3 only is a warning that says so.
 */
export function nodeTlsSettings(input: TlsSettingsInput): NodeTlsSettings {
  const warnings: string[] = [];
  const min = version(input.minProtocolVersion, 'minProtocolVersion') ?? DEFAULT_MIN;
  const max = version(input.maxProtocolVersion, 'maxProtocolVersion');
  const options: NodeTlsSettings['options'] = { minVersion: min };
  if (max) options.maxVersion = max;
  if (input.cipherSuites && input.cipherSuites.length > 0) {
    options.ciphers = input.cipherSuites.join(':');
    if (min === 'TLSv1.3') warnings.push('cipherSuites apply to TLS 1.2 and older only; with minProtocolVersion TLSV1_3 they have no effect');
  }
  if (input.ecdhCurves && input.ecdhCurves.length > 0) {
    options.ecdhCurve = input.ecdhCurves.map((c) => {
      const n = CURVES[c];
      if (!n) throw new Error(`ecdhCurves: "${c}" is not a curve (X25519, P-256, P-384, P-521)`);
      return n;
    }).join(':');
  }
  if (input.signatureAlgorithms && input.signatureAlgorithms.length > 0) options.sigalgs = input.signatureAlgorithms.join(':');
  return { options, warnings };
}
