import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/** Envoy's SDS service and resource type, as on the wire. */
export const SDS_SERVICE = 'envoy.service.secret.v3.SecretDiscoveryService';
export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
export const STREAM_SECRETS_PATH = `/${SDS_SERVICE}/StreamSecrets`;
export const FETCH_SECRETS_PATH = `/${SDS_SERVICE}/FetchSecrets`;

/** The files loaded: the service (which pulls in DiscoveryRequest/Response) and the Secret resource. */
export const SDS_PROTO_FILES = ['envoy/service/secret/v3/sds.proto', 'envoy/extensions/transport_sockets/tls/v3/secret.proto'];

/**
 * Envoy's public protos as @grpc/grpc-js-xds ships them (deps/envoy-api, xds, googleapis, protoc-gen-validate):
 * the same files Envoy is built from, so nothing is hand-written. Found through the package's own location, so it
 * works from src/ (tsx) and dist/ alike.
 */
export function sdsIncludeDirs(): string[] {
  const require = createRequire(import.meta.url);
  let root: string;
  try {
    root = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  } catch (err) {
    throw new MeshError(ErrorCodes.INTERNAL, `@grpc/grpc-js-xds is not installed; it ships Envoy's protos: ${describeError(err)}`, { cause: err });
  }
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(root, 'deps', d));
}

/**
 * camelCase fields; `json: true` so that google.protobuf.Any is unpacked to `{ '@type', ...fields }` on reading and
 * packed from that form on writing; no defaults (the TLS messages have dozens of fields we never set); oneofs
 * named (`specifier: 'inlineBytes'`); bytes as Buffers.
 */
export const SDS_LOADER_OPTIONS: Options = { keepCase: false, longs: String, enums: String, defaults: false, arrays: true, objects: false, oneofs: true, json: true };

/** google.protobuf.Any as proto-loader gives and takes it with `json: true`. */
export interface AnyMessage {
  '@type': string;
  [field: string]: unknown;
}

export interface DataSourceMessage {
  inlineBytes?: Buffer | Uint8Array;
  inlineString?: string;
  filename?: string;
  environmentVariable?: string;
  specifier?: string;
}

/** envoy.extensions.transport_sockets.tls.v3.Secret, as far as SDS for certificates uses it. */
export interface SecretMessage {
  '@type'?: string;
  name?: string;
  tlsCertificate?: {
    certificateChain?: DataSourceMessage;
    privateKey?: DataSourceMessage;
    ocspStaple?: DataSourceMessage;
    [field: string]: unknown;
  };
  validationContext?: {
    trustedCa?: DataSourceMessage;
    crl?: DataSourceMessage;
    [field: string]: unknown;
  };
  sessionTicketKeys?: unknown;
  genericSecret?: unknown;
  type?: string;
}

export interface NodeMessage {
  id?: string;
  cluster?: string;
  userAgentName?: string;
  [field: string]: unknown;
}

export interface StatusMessage {
  code?: number;
  message?: string;
  details?: unknown[];
}

export interface DiscoveryRequestMessage {
  versionInfo?: string;
  node?: NodeMessage | null;
  resourceNames?: string[];
  typeUrl?: string;
  responseNonce?: string;
  errorDetail?: StatusMessage | null;
}

export interface DiscoveryResponseMessage {
  versionInfo?: string;
  /** Any-packed; with `json: true`, each is `{ '@type', ...fields }`. */
  resources?: Array<SecretMessage | AnyMessage>;
  canary?: boolean;
  typeUrl?: string;
  nonce?: string;
  controlPlane?: { identifier?: string } | null;
}

export type StreamSecretsMethod = MethodDefinition<DiscoveryRequestMessage, DiscoveryResponseMessage>;
export type FetchSecretsMethod = MethodDefinition<DiscoveryRequestMessage, DiscoveryResponseMessage>;

interface Loaded {
  service: ServiceDefinition;
  stream: StreamSecretsMethod;
  fetch: FetchSecretsMethod;
}

let cached: Loaded | undefined;

/** Loads the protos once per process (~100-250 ms, 161 types). */
export function sdsProtos(): Loaded {
  if (cached) return cached;
  const includeDirs = sdsIncludeDirs();
  for (const d of includeDirs) {
    if (!existsSync(d)) throw new MeshError(ErrorCodes.INTERNAL, `${d}: Envoy's protos are missing from @grpc/grpc-js-xds`, { subject: d });
  }
  let service: ServiceDefinition;
  try {
    const pkg = loadSync(SDS_PROTO_FILES, { ...SDS_LOADER_OPTIONS, includeDirs });
    service = pkg[SDS_SERVICE] as unknown as ServiceDefinition;
  } catch (err) {
    throw new MeshError(ErrorCodes.INTERNAL, `cannot load Envoy's SDS protos: ${describeError(err)}`, { cause: err });
  }
  cached = {
    service,
    stream: service.StreamSecrets as StreamSecretsMethod,
    fetch: service.FetchSecrets as FetchSecretsMethod,
  };
  return cached;
}
