import { verify as nodeVerify, type KeyObject } from 'node:crypto';

/**
 * Signature algorithms meshcert verifies with node:crypto on raw signed bytes (CSRs, CRLs, OCSP): OID → Node digest
 * and the key kind it needs. RSA-PSS and SHA-1 signatures are refused: nothing in a mesh should make them today.
 */
const ALGORITHMS: Record<string, { name: string; digest: string | null; kind: 'ec' | 'rsa' | 'ed25519' }> = {
  '1.2.840.10045.4.3.2': { name: 'ecdsa-with-SHA256', digest: 'sha256', kind: 'ec' },
  '1.2.840.10045.4.3.3': { name: 'ecdsa-with-SHA384', digest: 'sha384', kind: 'ec' },
  '1.2.840.10045.4.3.4': { name: 'ecdsa-with-SHA512', digest: 'sha512', kind: 'ec' },
  '1.2.840.113549.1.1.11': { name: 'sha256WithRSAEncryption', digest: 'sha256', kind: 'rsa' },
  '1.2.840.113549.1.1.12': { name: 'sha384WithRSAEncryption', digest: 'sha384', kind: 'rsa' },
  '1.2.840.113549.1.1.13': { name: 'sha512WithRSAEncryption', digest: 'sha512', kind: 'rsa' },
  '1.3.101.112': { name: 'Ed25519', digest: null, kind: 'ed25519' },
};

export function signatureAlgorithmName(oid: string): string {
  return ALGORITHMS[oid]?.name ?? oid;
}

export function isSupportedSignatureAlgorithm(oid: string): boolean {
  return oid in ALGORITHMS;
}

/** Verifies `signature` over `data` with the algorithm `oid`; false (never a throw) on any mismatch. */
export function verifySignature(oid: string, data: Uint8Array, signature: Uint8Array, publicKey: KeyObject): boolean {
  const alg = ALGORITHMS[oid];
  if (!alg) return false;
  const keyKind = publicKey.asymmetricKeyType;
  if (keyKind !== alg.kind) return false;
  try {
    return nodeVerify(alg.digest, data, publicKey, signature);
  } catch {
    return false;
  }
}
