import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/** The full service name on the wire; Istio kept this package name for backward compatibility, and so do we. */
export const ISTIO_CA_SERVICE = 'istio.v1.auth.IstioCertificateService';
export const CREATE_CERTIFICATE_PATH = `/${ISTIO_CA_SERVICE}/CreateCertificate`;

/**
 * The .proto ships in the package (proto/ at its root). This module sits two levels below the root both as
 * src/server/*.ts (tsx) and as dist/server/*.js (built), so one relative URL serves both.
 */
export const ISTIO_CA_PROTO_PATH = fileURLToPath(new URL('../../proto/istio/v1/auth/ca.proto', import.meta.url));

/** camelCase fields, int64 as JS numbers (a validity in seconds fits easily), defaults filled in, `kind` set on oneofs (Struct values). */
export const PROTO_LOADER_OPTIONS: Options = { keepCase: false, longs: Number, enums: String, defaults: true, arrays: true, objects: true, oneofs: true };

/** google.protobuf.Value as proto-loader decodes it (without `json: true`). */
export interface ProtoValue {
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values?: ProtoValue[] };
  kind?: string;
}
export interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}

export interface IstioCertificateRequestMessage {
  csr: string;
  subjectId: string;
  validityDuration: number;
  metadata?: ProtoStruct | null;
}

export interface IstioCertificateResponseMessage {
  certChain: string[];
}

export type CreateCertificateMethod = MethodDefinition<IstioCertificateRequestMessage, IstioCertificateResponseMessage>;

let cached: CreateCertificateMethod | undefined;

/** Loads ca.proto once per process and returns the CreateCertificate method (path, serializers). */
export function istioCaMethod(): CreateCertificateMethod {
  if (cached) return cached;
  if (!existsSync(ISTIO_CA_PROTO_PATH)) {
    throw new MeshError(ErrorCodes.INTERNAL, `${ISTIO_CA_PROTO_PATH}: the Istio CA proto is missing from the installation`, {
      subject: ISTIO_CA_PROTO_PATH,
    });
  }
  let service: ServiceDefinition;
  try {
    const pkg = loadSync(ISTIO_CA_PROTO_PATH, PROTO_LOADER_OPTIONS);
    service = pkg[ISTIO_CA_SERVICE] as unknown as ServiceDefinition;
  } catch (err) {
    throw new MeshError(ErrorCodes.INTERNAL, `${ISTIO_CA_PROTO_PATH}: cannot load: ${describeError(err)}`, { subject: ISTIO_CA_PROTO_PATH, cause: err });
  }
  cached = service.CreateCertificate as CreateCertificateMethod;
  return cached;
}

/** The service definition to register on a grpc-js Server. */
export function istioCaServiceDefinition(): ServiceDefinition {
  return { CreateCertificate: istioCaMethod() } as ServiceDefinition;
}

/** google.protobuf.Struct → a plain JSON-like object (what the registration authority sees as `metadata`). */
export function structToObject(struct: ProtoStruct | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(struct?.fields ?? {})) out[k] = valueToJs(v);
  return out;
}

function valueToJs(v: ProtoValue | undefined): unknown {
  if (!v) return null;
  switch (v.kind) {
    case 'numberValue':
      return v.numberValue;
    case 'stringValue':
      return v.stringValue;
    case 'boolValue':
      return v.boolValue;
    case 'structValue':
      return structToObject(v.structValue);
    case 'listValue':
      return (v.listValue?.values ?? []).map(valueToJs);
    default:
      return null;
  }
}

/** A plain object → google.protobuf.Struct, for clients sending `metadata`. */
export function objectToStruct(obj: Record<string, unknown>): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = jsToValue(v);
  return { fields };
}

function jsToValue(v: unknown): ProtoValue {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(jsToValue) } };
  if (typeof v === 'object') return { structValue: objectToStruct(v as Record<string, unknown>) };
  return { stringValue: String(v) };
}
