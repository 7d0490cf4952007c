import { generateKeyPair as generateKeyPairCb, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { ErrorCodes, MeshError } from '../core/index.js';
import { buildCsr, exportPrivateKeyPem, toSigningKey } from '../pki/index.js';

/** The key types an agent makes for its workload (`--key`). */
export const AGENT_KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072'] as const;
export type AgentKeyType = (typeof AGENT_KEY_TYPES)[number];

export function parseAgentKeyType(value: string, field = '--key'): AgentKeyType {
  if (!(AGENT_KEY_TYPES as readonly string[]).includes(value)) {
    throw new MeshError(ErrorCodes.KEY_TYPE, `${field}: "${value}" is not a workload key type; use one of ${AGENT_KEY_TYPES.join(', ')}`, { subject: field });
  }
  return value as AgentKeyType;
}

/** A key made in memory for one certificate, and the CSR that asks for it. Never logged, written only where asked. */
export interface WorkloadKey {
  type: AgentKeyType;
  privateKey: KeyObject;
  /** PKCS#8 PEM, for SDS and key.pem. */
  keyPem: string;
  /** The CSR asks for nothing: the CA decides the identity from the credential, as istio-agent's CSRs do. */
  csrPem: string;
}

const generate = promisify(generateKeyPairCb);

/**
 * Makes a fresh key pair and its CSR. Asynchronous (the key is generated off the event loop) so that the SDS
 * server and the health endpoint keep answering while an RSA key is made (~0.1-1 s).
 */
export async function makeWorkloadKey(type: AgentKeyType = 'ec-p256'): Promise<WorkloadKey> {
  let privateKey: KeyObject;
  switch (type) {
    case 'ec-p256':
      ({ privateKey } = await generate('ec', { namedCurve: 'prime256v1' }));
      break;
    case 'ec-p384':
      ({ privateKey } = await generate('ec', { namedCurve: 'secp384r1' }));
      break;
    case 'rsa-2048':
    case 'rsa-3072':
      ({ privateKey } = await generate('rsa', { modulusLength: Number(type.slice(4)), publicExponent: 0x10001 }));
      break;
  }
  const csr = await buildCsr({}, await toSigningKey(privateKey));
  return { type, privateKey, keyPem: exportPrivateKeyPem(privateKey), csrPem: csr.pem };
}
