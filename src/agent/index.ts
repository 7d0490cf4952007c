// The public face of the workload agent: other folders import only this file.
export { requestCertificate } from './ca-client.js';
export type { CertificateRequestOptions, CertificateResponse } from './ca-client.js';
export { adminRevoke, adminListCertificates } from './admin-client.js';
export type { AdminClientOptions, AdminCertificate, AdminRevokeResult } from './admin-client.js';
export { Agent, SDS_DEFAULT, SDS_ROOTCA, DEFAULT_CA_SERVER_NAME } from './agent.js';
export type { AgentOptions, CertificateEvent, FailureEvent } from './agent.js';
export { AgentMetrics } from './agent-metrics.js';
export type { RenewalResult } from './agent-metrics.js';
export { AgentAdminServer, parseListenAddress } from './agent-admin.js';
export type { AgentHealth } from './agent-admin.js';
export { IdentitySource, serviceAccountPathOf } from './identity-source.js';
export type { AgentCredential, CredentialMethod, CurrentCertificate, IdentitySourceOptions } from './identity-source.js';
export { checkIssuedChain, mergeBundles } from './issued-certificate.js';
export type { IssuedCertificate, IssuedChainCheck } from './issued-certificate.js';
export { OutputFolder, OUTPUT_FILES, DATA_LINK } from './output-folder.js';
export type { OutputContents } from './output-folder.js';
export { RotateHook } from './rotate-hook.js';
export type { RotateEvent } from './rotate-hook.js';
export {
  RotationScheduler,
  DEFAULT_ROTATION_POLICY,
  MIN_RETRY_MS,
  checkRotationPolicy,
  renewalDelayMs,
  retryDelayMs,
} from './rotation-scheduler.js';
export type { RotationPolicy, NextStep } from './rotation-scheduler.js';
export { AGENT_KEY_TYPES, makeWorkloadKey, parseAgentKeyType } from './workload-key.js';
export type { AgentKeyType, WorkloadKey } from './workload-key.js';
