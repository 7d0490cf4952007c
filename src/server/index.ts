// The public face of the control plane: other folders (the CLI, tests) import only this file.
export { ControlPlane } from './control-plane.js';
export type { ControlPlaneOptions, ControlPlaneAddresses, SignerDeps, ClosableSigner } from './control-plane.js';
export { createCaGrpcService, grpcStatusFor, statusName } from './ca-grpc-service.js';
export type { CertificateSigner, CaGrpcServiceOptions, GrpcStatusFor } from './ca-grpc-service.js';
export {
  ISTIO_CA_SERVICE,
  CREATE_CERTIFICATE_PATH,
  ISTIO_CA_PROTO_PATH,
  istioCaMethod,
  istioCaServiceDefinition,
  structToObject,
  objectToStruct,
} from './istio-ca-proto.js';
export type { IstioCertificateRequestMessage, IstioCertificateResponseMessage } from './istio-ca-proto.js';
export { ServingCertificate, servingNames } from './serving-certificate.js';
export type { ServingCertificateOptions } from './serving-certificate.js';
export { HttpEndpoint } from './http-server.js';
export type { HealthCheck, HttpEndpointOptions } from './http-server.js';
export { ServerMetrics } from './metrics.js';
export type { IssuanceResult } from './metrics.js';
export { defaultSigner } from './control-plane.js';
export type { SigningDomain } from './signing-domain.js';
export { firstStartToken, FIRST_TOKEN_FILES } from './first-token.js';
export type { FirstToken } from './first-token.js';
