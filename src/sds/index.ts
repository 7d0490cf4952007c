// The public face of Envoy SDS: protos, the mapping of our secrets to Envoy's Secret, the server and the client.
export {
  SDS_SERVICE,
  SECRET_TYPE_URL,
  STREAM_SECRETS_PATH,
  FETCH_SECRETS_PATH,
  SDS_PROTO_FILES,
  SDS_LOADER_OPTIONS,
  sdsIncludeDirs,
  sdsProtos,
} from './sds-protos.js';
export type {
  AnyMessage,
  DataSourceMessage,
  SecretMessage,
  NodeMessage,
  StatusMessage,
  DiscoveryRequestMessage,
  DiscoveryResponseMessage,
  StreamSecretsMethod,
  FetchSecretsMethod,
} from './sds-protos.js';
export { secretResource, tlsPayload, validationPayload, decodeSecretResource } from './secret-resource.js';
export type { SecretPayload, SecretResource, ReceivedSecret, DecodedSecret } from './secret-resource.js';
export { GatewaySecretProvider, StaticSecretProvider, combineProviders } from './secret-provider.js';
export type { SecretProvider, ResourceState, ResourceChangeListener } from './secret-provider.js';
export { createSdsService, sdsServerCredentials, versionOf, SdsServer } from './sds-server.js';
export type { SdsService, SdsServiceOptions, SdsServerOptions, SdsAuthorization } from './sds-server.js';
export { SdsClient, sdsClientCredentials } from './sds-client.js';
export type { SdsClientOptions, ClientSecret, NackEvent, DisconnectEvent } from './sds-client.js';
export { SdsMetrics } from './sds-metrics.js';
