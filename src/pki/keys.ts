import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  type webcrypto as WebCrypto,
} from 'node:crypto';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';
import { subtle } from './crypto-provider.js';
import { decodePem, looksLikePem } from './pem.js';

export const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export type CryptoKey = WebCrypto.CryptoKey;

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface KeyDescription {
  /** One of KEY_TYPES when the key is one we generate; otherwise e.g. "ec-p521", "rsa-2304". */
  name: string;
  kind: 'ec' | 'rsa' | 'ed25519';
  bits: number;
  curve?: string;
}

/** The signature a CA key makes: WebCrypto parameters for @peculiar/x509/pkijs, and Node's digest for crypto.sign. */
export interface SignatureScheme {
  webcrypto: { name: string; hash?: string; namedCurve?: string };
  /** Node digest name for `crypto.sign`, or null for Ed25519 (no pre-hash). */
  digest: 'sha256' | 'sha384' | 'sha512' | null;
  /** OID of the X.509 signature algorithm. */
  oid: string;
  name: string;
}

export function isKeyType(value: string): value is KeyType {
  return (KEY_TYPES as readonly string[]).includes(value);
}

export function parseKeyType(value: string, field = '--key'): KeyType {
  if (!isKeyType(value)) {
    throw new MeshError(ErrorCodes.KEY_TYPE, `${field}: "${value}" is not a key type; use one of ${KEY_TYPES.join(', ')}`, {
      subject: field,
    });
  }
  return value;
}

export function generateKeyPair(type: KeyType = 'ec-p256'): KeyPair {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    case 'ec-p384':
      return generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return generateKeyPairSync('rsa', { modulusLength: Number(type.slice(4)), publicExponent: 0x10001 });
    case 'ed25519':
      return generateKeyPairSync('ed25519');
  }
}

const CURVES: Record<string, { name: string; bits: number; webcrypto: string }> = {
  prime256v1: { name: 'ec-p256', bits: 256, webcrypto: 'P-256' },
  secp384r1: { name: 'ec-p384', bits: 384, webcrypto: 'P-384' },
  secp521r1: { name: 'ec-p521', bits: 521, webcrypto: 'P-521' },
};

/** What a key is, or an error for key kinds meshcert does not accept (DSA, secp256k1, RSA-PSS-only, X25519…). */
export function describeKey(key: KeyObject, source = 'key'): KeyDescription {
  const type = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails ?? {};
  if (type === 'ec') {
    const curve = CURVES[d.namedCurve ?? ''];
    if (!curve) {
      throw new MeshError(ErrorCodes.KEY_TYPE, `${source}: EC curve ${d.namedCurve ?? 'unknown'} is not supported; use P-256 or P-384`, {
        subject: source,
      });
    }
    return { name: curve.name, kind: 'ec', bits: curve.bits, curve: curve.webcrypto };
  }
  if (type === 'rsa') {
    const bits = d.modulusLength ?? 0;
    return { name: `rsa-${bits}`, kind: 'rsa', bits };
  }
  if (type === 'ed25519') return { name: 'ed25519', kind: 'ed25519', bits: 256 };
  throw new MeshError(ErrorCodes.KEY_TYPE, `${source}: ${type ?? 'unknown'} keys are not supported; use EC P-256/P-384, RSA ≥ 2048 or Ed25519`, {
    subject: source,
  });
}

/** Rejects keys too weak to certify: RSA under 2048 bits. */
export function assertKeyStrength(key: KeyObject, source = 'key'): KeyDescription {
  const desc = describeKey(key, source);
  if (desc.kind === 'rsa' && desc.bits < 2048) {
    throw new MeshError(ErrorCodes.KEY_TOO_WEAK, `${source}: RSA key of ${desc.bits} bits is too weak; at least 2048 bits are required`, {
      subject: source,
    });
  }
  return desc;
}

/**
 * Reads a private key as cert-manager, openssl and Kubernetes write them: PKCS#8 ("PRIVATE KEY"), PKCS#1
 * ("RSA PRIVATE KEY"), SEC1 ("EC PRIVATE KEY"), encrypted PKCS#8 with a passphrase, or DER PKCS#8.
 */
export function parsePrivateKey(data: string | Uint8Array, source = 'key', passphrase?: string): KeyObject {
  let key: KeyObject;
  try {
    if (looksLikePem(data)) {
      const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
      const block = decodePem(text, source).find((b) => /PRIVATE KEY$/.test(b.label));
      if (!block) {
        throw new MeshError(ErrorCodes.KEY_PARSE, `${source}: no PRIVATE KEY block (expected PKCS#8, PKCS#1 or SEC1 PEM)`, { subject: source });
      }
      if (block.label === 'ENCRYPTED PRIVATE KEY' && passphrase === undefined) {
        throw new MeshError(ErrorCodes.KEY_PARSE, `${source}: the private key is encrypted; a passphrase is required`, { subject: source });
      }
      const pem = `-----BEGIN ${block.label}-----\n${block.der.toString('base64')}\n-----END ${block.label}-----\n`;
      key = createPrivateKey(passphrase === undefined ? { key: pem, format: 'pem' } : { key: pem, format: 'pem', passphrase });
    } else {
      key = createPrivateKey({ key: Buffer.from(data as Uint8Array), format: 'der', type: 'pkcs8' });
    }
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError(ErrorCodes.KEY_PARSE, `${source}: not a readable private key: ${describeError(err)}`, { subject: source, cause: err });
  }
  assertKeyStrength(key, source);
  return key;
}

/** Reads a public key from SPKI PEM/DER, or derives it from a private key. */
export function parsePublicKey(data: string | Uint8Array, source = 'public key'): KeyObject {
  try {
    const key = looksLikePem(data)
      ? createPublicKey({ key: typeof data === 'string' ? data : Buffer.from(data).toString('utf8'), format: 'pem' })
      : createPublicKey({ key: Buffer.from(data as Uint8Array), format: 'der', type: 'spki' });
    describeKey(key, source);
    return key;
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError(ErrorCodes.KEY_PARSE, `${source}: not a readable public key: ${describeError(err)}`, { subject: source, cause: err });
  }
}

export function publicKeyOf(key: KeyObject): KeyObject {
  return key.type === 'public' ? key : createPublicKey(key);
}

export function exportPrivateKeyPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }) as string;
}

export function exportPublicKeyPem(key: KeyObject): string {
  return publicKeyOf(key).export({ format: 'pem', type: 'spki' }) as string;
}

export function spkiDer(key: KeyObject): Buffer {
  return publicKeyOf(key).export({ format: 'der', type: 'spki' });
}

/** True when the private key belongs to the public key (compared as SPKI DER). */
export function keysMatch(privateKey: KeyObject, publicKey: KeyObject): boolean {
  return spkiDer(privateKey).equals(spkiDer(publicKey));
}

/** The signature scheme a CA uses with this key: ECDSA with the curve's hash, RSA PKCS#1 v1.5 SHA-256, Ed25519. */
export function signatureSchemeFor(key: KeyObject): SignatureScheme {
  const desc = describeKey(key);
  if (desc.kind === 'ec') {
    if (desc.curve === 'P-256')
      return { webcrypto: { name: 'ECDSA', hash: 'SHA-256', namedCurve: 'P-256' }, digest: 'sha256', oid: '1.2.840.10045.4.3.2', name: 'ecdsa-with-SHA256' };
    if (desc.curve === 'P-384')
      return { webcrypto: { name: 'ECDSA', hash: 'SHA-384', namedCurve: 'P-384' }, digest: 'sha384', oid: '1.2.840.10045.4.3.3', name: 'ecdsa-with-SHA384' };
    return { webcrypto: { name: 'ECDSA', hash: 'SHA-512', namedCurve: 'P-521' }, digest: 'sha512', oid: '1.2.840.10045.4.3.4', name: 'ecdsa-with-SHA512' };
  }
  if (desc.kind === 'rsa')
    return { webcrypto: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, digest: 'sha256', oid: '1.2.840.113549.1.1.11', name: 'sha256WithRSAEncryption' };
  return { webcrypto: { name: 'Ed25519' }, digest: null, oid: '1.3.101.112', name: 'Ed25519' };
}

function importParams(scheme: SignatureScheme): { name: string; hash?: string; namedCurve?: string } {
  const { name, hash, namedCurve } = scheme.webcrypto;
  if (name === 'ECDSA') return { name, namedCurve: namedCurve! };
  if (name === 'RSASSA-PKCS1-v1_5') return { name, hash: hash! };
  return { name };
}

/** A private key ready to sign through both Node (`privateKey`) and WebCrypto (`cryptoKey`). Made once, reused. */
export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  cryptoKey: CryptoKey;
  publicCryptoKey: CryptoKey;
  scheme: SignatureScheme;
  description: KeyDescription;
}

export async function toSigningKey(privateKey: KeyObject): Promise<SigningKey> {
  const scheme = signatureSchemeFor(privateKey);
  const publicKey = publicKeyOf(privateKey);
  const params = importParams(scheme);
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const cryptoKey = await subtle.importKey('pkcs8', der, params, true, ['sign']);
  const publicCryptoKey = await subtle.importKey('spki', spkiDer(publicKey), params, true, ['verify']);
  return { privateKey, publicKey, cryptoKey, publicCryptoKey, scheme, description: describeKey(privateKey) };
}

/** WebCrypto public key for verification with @peculiar/x509 (e.g. a CSR or leaf public key). */
export async function toPublicCryptoKey(publicKey: KeyObject): Promise<CryptoKey> {
  const params = importParams(signatureSchemeFor(publicKey));
  return subtle.importKey('spki', spkiDer(publicKey), params, true, ['verify']);
}
