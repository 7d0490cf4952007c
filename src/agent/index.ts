// The public face of the workload agent: other folders import only this file.
export { requestCertificate } from './ca-client.js';
export type { CertificateRequestOptions, CertificateResponse } from './ca-client.js';
export { adminRevoke, adminListCertificates } from './admin-client.js';
export type { AdminClientOptions, AdminCertificate, AdminRevokeResult } from './admin-client.js';
