export { fieldPath, configError } from './config-errors.js';
export { duration, listenAddress, httpUrl } from './fields.js';
export type { ListenAddress } from './fields.js';
export { serveConfigSchema, defaultServeConfig, parseServeConfig, loadServeConfig } from './serve-config.js';
export type { ServeConfig } from './serve-config.js';
export { sdsConfigSchema, type SdsConfig } from './sds-config.js';
// The gateway file (`meshcert gateway -f FILE`, `meshcert envoy-config -f FILE`): Istio's kinds + GatewayOptions.
export { parseGatewayFile, loadGatewayFile } from './gateway-file.js';
export type { GatewayFileConfig, GatewayResource } from './gateway-file.js';
export { GatewayRouter, pickDestination } from './gateway-routes.js';
export type { ServerRef, ResolvedDestination, HttpRequestInfo, HttpRouteResult, StreamRouteResult } from './gateway-routes.js';
export { hostMatches, hostSpecificity, bestHostMatch, normalizeHost } from './gateway-host-match.js';
export { stringMatches } from './gateway-fields.js';
export type { StringMatch } from './gateway-fields.js';
export { TLS_VERSIONS, CIPHER_SUITES, ECDH_CURVES, SIGNATURE_ALGORITHMS, tlsVersionRank } from './gateway-tls-names.js';
export type { TlsVersionName, EcdhCurveName, SignatureAlgorithmName } from './gateway-tls-names.js';
export { terminatesTls, SERVER_PROTOCOLS, SERVER_TLS_MODES } from './istio-gateway.js';
export type { GatewaySpec, GatewayServer, ServerTls, ServerProtocol, ServerTlsMode } from './istio-gateway.js';
export type {
  VirtualServiceSpec,
  HttpRoute,
  HttpMatch,
  HttpRouteDestination,
  TlsRoute,
  TcpRoute,
  RouteDestination,
  Destination,
  HeaderOperations,
} from './virtual-service.js';
export { DEFAULT_RETRY_ON, parseRetryOn, type ParsedRetryOn } from './retry-on.js';
export { effectiveTrafficPolicy, CLIENT_TLS_MODES } from './destination-rule.js';
export type { DestinationRuleSpec, ClientTls, ClientTlsMode, ConnectionPool, TrafficPolicy } from './destination-rule.js';
export { SUPPORTED_CONDITION_KEYS } from './authorization-policy.js';
export type {
  AuthorizationPolicySpec,
  AuthorizationRule,
  AuthorizationSource,
  AuthorizationOperation,
  AuthorizationCondition,
} from './authorization-policy.js';
export { defaultGatewayOptions } from './gateway-options.js';
export type { GatewayOptionsSpec, UpstreamAddress, ValidationConfig, PortOptions } from './gateway-options.js';
export { buildEnvoyBootstrap, clusterName, protoDuration, SDS_CLUSTER_NAME, WORKLOAD_SDS_CLUSTER_NAME } from './gateway-envoy-bootstrap.js';
export type { EnvoyBootstrapInput, EnvoyBootstrapResult, EnvoyStaplePolicyName, SdsEndpoint } from './gateway-envoy-bootstrap.js';
export { bumpConfigSchema, parseBumpConfig, loadBumpConfig, defaultBumpConfig, type BumpConfig, type BumpFilterConfig } from './bump-config.js';
