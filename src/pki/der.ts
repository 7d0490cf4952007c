import * as asn1js from 'asn1js';
import { ErrorCodes, MeshError, type ErrorCode } from '../core/index.js';

/**
 * Parses DER with asn1js and insists that the whole input is one well-formed element: truncated or trailing bytes
 * are an error naming `source`, not a silently shorter object.
 */
export function parseDer(der: Uint8Array, source: string, code: ErrorCode = ErrorCodes.DER): asn1js.AsnType {
  const view = new Uint8Array(der.buffer, der.byteOffset, der.byteLength);
  const res = asn1js.fromBER(view);
  if (res.offset === -1 || res.result.error) {
    throw new MeshError(code, `${source}: malformed DER${res.result.error ? `: ${res.result.error}` : ''}`, { subject: source });
  }
  if (res.offset !== der.byteLength) {
    throw new MeshError(code, `${source}: ${der.byteLength - res.offset} trailing bytes after the DER object`, { subject: source });
  }
  return res.result;
}

/** The DER bytes of an element exactly as they were in the input (for hashing names and keys as encoded). */
export function rawBytes(el: asn1js.AsnType): Buffer {
  const v = (el as unknown as { valueBeforeDecodeView: Uint8Array }).valueBeforeDecodeView;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export function children(el: asn1js.AsnType): asn1js.AsnType[] {
  const value = (el as unknown as { valueBlock: { value?: unknown } }).valueBlock.value;
  return Array.isArray(value) ? (value as asn1js.AsnType[]) : [];
}

export function toArrayBuffer(data: Uint8Array): ArrayBuffer {
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
}
