/**
 * TLS names as Istio and Envoy write them (BoringSSL cipher names, curve names, TLS 1.3 signature scheme names),
 * with their OpenSSL/Node spelling where it differs, so the gateway can pass them to node:tls.
 */

/** Istio's protocol version names, and Node's `minVersion`/`maxVersion` for them (TLS_AUTO = Node's default). */
export const TLS_VERSIONS = {
  TLS_AUTO: undefined,
  TLSV1_0: 'TLSv1',
  TLSV1_1: 'TLSv1.1',
  TLSV1_2: 'TLSv1.2',
  TLSV1_3: 'TLSv1.3',
} as const;
export type TlsVersionName = keyof typeof TLS_VERSIONS;
export const TLS_VERSION_NAMES = Object.keys(TLS_VERSIONS) as [TlsVersionName, ...TlsVersionName[]];

/** Rank of a version name for comparisons; TLS_AUTO ranks as undefined. */
export function tlsVersionRank(v: TlsVersionName): number | undefined {
  return v === 'TLS_AUTO' ? undefined : TLS_VERSION_NAMES.indexOf(v);
}

/**
 * TLS 1.2 (and older) cipher suites Envoy (BoringSSL) accepts in `cipher_suites`, as Istio validates them. The
 * names are also OpenSSL's, so Node's `ciphers` option takes them as they are. PSK suites are left out (the
 * gateway has no pre-shared keys).
 */
export const CIPHER_SUITES: ReadonlySet<string> = new Set([
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-SHA',
  'ECDHE-RSA-AES128-SHA',
  'ECDHE-ECDSA-AES256-SHA',
  'ECDHE-RSA-AES256-SHA',
  'AES128-GCM-SHA256',
  'AES256-GCM-SHA384',
  'AES128-SHA',
  'AES256-SHA',
  'DES-CBC3-SHA',
]);

/** Envoy's `ecdh_curves` names, and OpenSSL's (Node `ecdhCurve`, `openssl s_client -groups`). */
export const ECDH_CURVES = {
  X25519: 'X25519',
  'P-256': 'P-256',
  'P-384': 'P-384',
  'P-521': 'P-521',
} as const;
export type EcdhCurveName = keyof typeof ECDH_CURVES;
export const ECDH_CURVE_NAMES = Object.keys(ECDH_CURVES) as [EcdhCurveName, ...EcdhCurveName[]];

/**
 * TLS signature scheme names (RFC 8446, as Envoy's `signature_algorithms` and OpenSSL's `-sigalgs` write them);
 * Node's `sigalgs` option takes them as they are.
 */
export const SIGNATURE_ALGORITHMS = [
  'ecdsa_secp256r1_sha256',
  'ecdsa_secp384r1_sha384',
  'ecdsa_secp521r1_sha512',
  'ed25519',
  'rsa_pss_rsae_sha256',
  'rsa_pss_rsae_sha384',
  'rsa_pss_rsae_sha512',
  'rsa_pss_pss_sha256',
  'rsa_pss_pss_sha384',
  'rsa_pss_pss_sha512',
  'rsa_pkcs1_sha256',
  'rsa_pkcs1_sha384',
  'rsa_pkcs1_sha512',
] as const;
export type SignatureAlgorithmName = (typeof SIGNATURE_ALGORITHMS)[number];
