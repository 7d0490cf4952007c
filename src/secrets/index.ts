// The public face of gateway secrets: sources (manifest files, mounted folders), the model, the stapling policy.
export { secretError, secretWarning, isValidSecretName, SECRET_KEY_PATTERN } from './raw-secret.js';
export type { RawSecret, SecretProblem, SecretProblemCode } from './raw-secret.js';
export { parseSecretManifests, loadManifestFile, isManifestFileName } from './secret-manifest.js';
export type { ParsedManifests, ManifestProblem } from './secret-manifest.js';
export { readMountedSecret, isMountedSecretDir, mountedSecretSignature, KUBELET_DATA_LINK } from './mounted-secret.js';
export type { MountedSecretRead } from './mounted-secret.js';
export { listOrigins, loadOrigin, originSignature } from './secret-files.js';
export type { SecretOrigin, OriginListing, LoadedOrigin } from './secret-files.js';
export {
  SecretKeys,
  KUBERNETES_RESOURCE_PREFIX,
  CACERT_SUFFIX,
  buildGatewaySecret,
  evaluateSecret,
  rawDigest,
  resourceTarget,
  tlsResourceName,
  caResourceName,
  resourceNamesOf,
  stapleFingerprint,
  withFetchedStaple,
} from './gateway-secret.js';
export type { GatewaySecret, TlsSide, CaSide, BuildResult, BuildOptions, SecretEvaluation, CrlStatus, ResourceTarget } from './gateway-secret.js';
export {
  OCSP_POLICY_ANNOTATION,
  OCSP_POLICIES,
  ENVOY_STAPLE_POLICY,
  STAPLING_TABLE,
  parseOcspPolicy,
  effectivePolicy,
  assessStaple,
  decideStapling,
  gatewayServes,
} from './stapling-policy.js';
export type {
  OcspPolicy,
  EnvoyStaplePolicy,
  EffectivePolicy,
  StapleState,
  StapleAssessment,
  AssessStapleInput,
  GatewayAction,
  SdsAction,
  StaplingDecision,
} from './stapling-policy.js';
export { SecretSource } from './secret-source.js';
export type { SecretSourceOptions, SecretEntry, ServedVersion, RejectedVersion, SecretChange, SecretChangeListener, OriginReport } from './secret-source.js';
export { checkSecrets, formatSecretCheck } from './secret-check.js';
export type { SecretCheckReport, CheckedSecret, CheckedResource, CheckOptions } from './secret-check.js';
export { registerSecretMetrics } from './secret-metrics.js';
export { fetchStaple, ocspUrlsOf, STAPLE_FETCH_FAILURES } from './staple-fetcher.js';
export type { FetchStapleOptions, StapleFetchResult, StapleFetchFailure } from './staple-fetcher.js';
export { nextRefreshAt, retryDelayMs, resolveStapleSchedule, DEFAULT_STAPLE_SCHEDULE } from './staple-schedule.js';
export type { StapleScheduleOptions, ResolvedStapleSchedule, RandomSource } from './staple-schedule.js';
export { StapleCache, stapleCacheDir, stapleKey, STAPLE_CACHE_DIR } from './staple-cache.js';
export type { StapleRecord, StapleAttempt, CachedStaple } from './staple-cache.js';
export { chooseStaple, cachedStapleSupplier } from './staple-supplier.js';
export type { StapleSupplier, StapleTarget, SuppliedStaple } from './staple-supplier.js';
export { StapleRefresher } from './staple-refresher.js';
export type { StapleRefresherOptions, StapleFetchState, StapleFetchScope, StapleFetchObserver } from './staple-refresher.js';
export { StapleMetrics } from './staple-metrics.js';
