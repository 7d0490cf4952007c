import { z } from 'zod';
import { duration } from './fields.js';
import { destinationHost, durationOrZero, portSelector, unsupported } from './gateway-fields.js';
import { credentialName } from './istio-gateway.js';

/** Upstream TLS modes of a DestinationRule (TLS origination). */
export const CLIENT_TLS_MODES = ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'] as const;
export type ClientTlsMode = (typeof CLIENT_TLS_MODES)[number];

/** Istio's ClientTLSSettings: how the gateway connects to the upstream. */
export const clientTlsSchema = z
  .strictObject({
    mode: z.preprocess(
      (s) => (typeof s === 'string' ? s.trim().toUpperCase() : s),
      z.enum(CLIENT_TLS_MODES, { message: `expected ${CLIENT_TLS_MODES.join(', ')}` }),
    ),
    /** Secret with the client certificate (MUTUAL) and/or the CA to verify the upstream (`ca.crt`, or NAME-cacert). */
    credentialName: credentialName.optional(),
    /** File paths, as Istio allows when no credentialName is given (relative to the working directory). */
    clientCertificate: z.string().min(1).optional(),
    privateKey: z.string().min(1).optional(),
    caCertificates: z.string().min(1).optional(),
    caCrl: z.string().min(1).optional(),
    /** SNI sent upstream; absent = the destination host. */
    sni: z.string().min(1).optional(),
    /** The upstream certificate must carry one of these SANs; absent = the SNI / destination host as a DNS SAN. */
    subjectAltNames: z.array(z.string().min(1)).optional(),
    /** Skip verifying the upstream certificate (Istio's insecureSkipVerify); a warning at load time. */
    insecureSkipVerify: z.boolean().default(false),
  })
  .superRefine((t, ctx) => {
    if ((t.clientCertificate === undefined) !== (t.privateKey === undefined)) {
      ctx.addIssue({ code: 'custom', path: [t.clientCertificate === undefined ? 'clientCertificate' : 'privateKey'], message: 'give clientCertificate and privateKey together' });
    }
    if (t.credentialName !== undefined && (t.clientCertificate !== undefined || t.caCertificates !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['credentialName'], message: 'give credentialName or file paths (clientCertificate, privateKey, caCertificates), not both' });
    }
    if (t.mode === 'MUTUAL' && t.credentialName === undefined && t.clientCertificate === undefined) {
      ctx.addIssue({ code: 'custom', path: ['credentialName'], message: 'MUTUAL needs a client certificate: credentialName, or clientCertificate and privateKey' });
    }
    if ((t.mode === 'DISABLE' || t.mode === 'ISTIO_MUTUAL') && (t.credentialName || t.clientCertificate || t.caCertificates)) {
      ctx.addIssue({ code: 'custom', path: ['mode'], message: `${t.mode} takes no credentials (ISTIO_MUTUAL uses the gateway's own workload identity)` });
    }
  });
export type ClientTls = z.output<typeof clientTlsSchema>;

/** Accepted connection pool settings (the gateway applies connectTimeout, maxConnections and idleTimeout). */
export const connectionPoolSchema = z.strictObject({
  tcp: z
    .strictObject({
      maxConnections: z.number().int().min(1).optional(),
      connectTimeout: duration.optional(),
      tcpKeepalive: z
        .strictObject({ probes: z.number().int().min(1).optional(), time: duration.optional(), interval: duration.optional() })
        .optional(),
      maxConnectionDuration: durationOrZero.optional(),
      idleTimeout: durationOrZero.optional(),
    })
    .optional(),
  http: z
    .strictObject({
      http1MaxPendingRequests: z.number().int().min(0).optional(),
      http2MaxRequests: z.number().int().min(0).optional(),
      maxRequestsPerConnection: z.number().int().min(0).optional(),
      maxRetries: z.number().int().min(0).optional(),
      idleTimeout: durationOrZero.optional(),
      h2UpgradePolicy: z.enum(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']).optional(),
      useClientProtocol: z.boolean().optional(),
      maxConcurrentStreams: z.number().int().min(1).optional(),
    })
    .optional(),
});
export type ConnectionPool = z.output<typeof connectionPoolSchema>;

const portTrafficPolicy = z.strictObject({
  port: portSelector,
  tls: clientTlsSchema.optional(),
  connectionPool: connectionPoolSchema.optional(),
  loadBalancer: unsupported('loadBalancer'),
  outlierDetection: unsupported('outlierDetection'),
});

/** Upstream policy: TLS origination and connection pool, with per-port overrides. */
export const trafficPolicySchema = z.strictObject({
  tls: clientTlsSchema.optional(),
  connectionPool: connectionPoolSchema.optional(),
  portLevelSettings: z.array(portTrafficPolicy).optional(),
  loadBalancer: unsupported('loadBalancer'),
  outlierDetection: unsupported('outlierDetection'),
  tunnel: unsupported('tunnel'),
  proxyProtocol: unsupported('proxyProtocol'),
});
export type TrafficPolicy = z.output<typeof trafficPolicySchema>;

/** The spec of Istio's `DestinationRule`. */
export const destinationRuleSpecSchema = z.strictObject({
  host: destinationHost,
  trafficPolicy: trafficPolicySchema.optional(),
  /** Named subsets; `labels` are accepted and ignored (one address per host, from GatewayOptions.upstreams). */
  subsets: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        labels: z.record(z.string(), z.string()).optional(),
        trafficPolicy: trafficPolicySchema.optional(),
      }),
    )
    .optional(),
  exportTo: z.array(z.string()).optional(),
  workloadSelector: z.unknown().optional(),
});
export type DestinationRuleSpec = z.output<typeof destinationRuleSpecSchema>;

/** The TLS and pool that apply to (host, port, subset): subset over rule, port-level over whole-host. */
export function effectiveTrafficPolicy(
  spec: DestinationRuleSpec | undefined,
  port: number | undefined,
  subset?: string,
): { tls?: ClientTls; connectionPool?: ConnectionPool } {
  if (!spec) return {};
  const layers: Array<TrafficPolicy | undefined> = [spec.trafficPolicy];
  if (subset !== undefined) layers.push(spec.subsets?.find((s) => s.name === subset)?.trafficPolicy);
  let tls: ClientTls | undefined;
  let connectionPool: ConnectionPool | undefined;
  for (const layer of layers) {
    if (!layer) continue;
    tls = layer.tls ?? tls;
    connectionPool = layer.connectionPool ?? connectionPool;
    const pl = port === undefined ? undefined : layer.portLevelSettings?.find((p) => p.port.number === port);
    if (pl) {
      tls = pl.tls ?? tls;
      connectionPool = pl.connectionPool ?? connectionPool;
    }
  }
  return { ...(tls ? { tls } : {}), ...(connectionPool ? { connectionPool } : {}) };
}
