import { z } from 'zod';
import { gatewayHost, portNumber, unsupported } from './gateway-fields.js';
import { CIPHER_SUITES, TLS_VERSION_NAMES, tlsVersionRank } from './gateway-tls-names.js';

/** Server protocols the gateway speaks (Istio's names). HTTP2 and GRPC without TLS are cleartext HTTP/2. */
export const SERVER_PROTOCOLS = ['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'TLS', 'TCP'] as const;
export type ServerProtocol = (typeof SERVER_PROTOCOLS)[number];

/** TLS modes of a Gateway server. Istio's default (absent mode) is PASSTHROUGH. */
export const SERVER_TLS_MODES = ['SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL', 'PASSTHROUGH'] as const;
export type ServerTlsMode = (typeof SERVER_TLS_MODES)[number];

const upper = (s: unknown) => (typeof s === 'string' ? s.trim().toUpperCase() : s);

const serverTlsMode = z.preprocess(
  upper,
  z.string().transform((m, ctx): ServerTlsMode => {
    if ((SERVER_TLS_MODES as readonly string[]).includes(m)) return m as ServerTlsMode;
    if (m === 'AUTO_PASSTHROUGH' || m === 'OPTIONAL_MUTUAL') {
      ctx.addIssue({ code: 'custom', message: `${m} is not supported by meshcert's gateway; use ${SERVER_TLS_MODES.join(', ')}` });
    } else {
      ctx.addIssue({ code: 'custom', message: `"${m}" is not a TLS mode: expected ${SERVER_TLS_MODES.join(', ')}` });
    }
    return z.NEVER;
  }),
);

const tlsVersion = z.preprocess(upper, z.enum(TLS_VERSION_NAMES, { message: `expected ${TLS_VERSION_NAMES.join(', ')}` }));

/** A Kubernetes Secret name as credentialName; `kubernetes://` (Istio's SDS prefix) is accepted and stripped. */
export const credentialName = z
  .string()
  .transform((s) => (s.startsWith('kubernetes://') ? s.slice('kubernetes://'.length) : s))
  .pipe(
    z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, {
      message: 'expected the name of a Secret (lowercase letters, digits, "-" and ".")',
    }),
  );

/** Istio's ServerTLSSettings, as far as meshcert's gateway implements it. */
export const serverTlsSchema = z
  .strictObject({
    /** Absent = PASSTHROUGH, as in Istio. */
    mode: serverTlsMode.default('PASSTHROUGH'),
    /** Secret (in the secrets folder or over SDS as `kubernetes://NAME`, CA side `kubernetes://NAME-cacert`). */
    credentialName: credentialName.optional(),
    /** On HTTP servers: answer every request with a 301 to https. */
    httpsRedirect: z.boolean().default(false),
    minProtocolVersion: tlsVersion.default('TLS_AUTO'),
    maxProtocolVersion: tlsVersion.default('TLS_AUTO'),
    /** TLS 1.2 and older only (TLS 1.3 suites are not configurable, as in Envoy). Names as OpenSSL/BoringSSL. */
    cipherSuites: z
      .array(
        z.string().refine((c) => CIPHER_SUITES.has(c), {
          message: `unknown cipher suite; expected one of ${[...CIPHER_SUITES].join(', ')}`,
        }),
      )
      .optional(),
    /** MUTUAL / ISTIO_MUTUAL: the client certificate must carry one of these SANs (exact; URI, DNS, email or IP). */
    subjectAltNames: z.array(z.string().min(1)).optional(),
    serverCertificate: unsupported('serverCertificate (file paths); put the certificate in a Secret and use credentialName'),
    privateKey: unsupported('privateKey (file paths); put the key in a Secret and use credentialName'),
    caCertificates: unsupported('caCertificates (file paths); put ca.crt in the Secret (or NAME-cacert) named by credentialName'),
    caCrl: unsupported('caCrl (file path); put ca.crl in the Secret named by credentialName'),
    credentialNames: unsupported('credentialNames; use one credentialName per server'),
    verifyCertificateSpki: unsupported('verifyCertificateSpki'),
    verifyCertificateHash: unsupported('verifyCertificateHash'),
  })
  .superRefine((t, ctx) => {
    const min = tlsVersionRank(t.minProtocolVersion);
    const max = tlsVersionRank(t.maxProtocolVersion);
    if (min !== undefined && max !== undefined && min > max) {
      ctx.addIssue({ code: 'custom', path: ['minProtocolVersion'], message: `${t.minProtocolVersion} is above maxProtocolVersion ${t.maxProtocolVersion}` });
    }
    if ((t.mode === 'SIMPLE' || t.mode === 'MUTUAL') && t.credentialName === undefined) {
      ctx.addIssue({ code: 'custom', path: ['credentialName'], message: `tls.mode ${t.mode} needs credentialName (the Secret holding the certificate)` });
    }
    if (t.mode === 'ISTIO_MUTUAL' && t.credentialName !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['credentialName'], message: 'ISTIO_MUTUAL uses the gateway\'s own workload identity; remove credentialName or use MUTUAL' });
    }
    if (t.subjectAltNames !== undefined && t.mode !== 'MUTUAL' && t.mode !== 'ISTIO_MUTUAL') {
      ctx.addIssue({ code: 'custom', path: ['subjectAltNames'], message: `subjectAltNames checks client certificates: only with MUTUAL or ISTIO_MUTUAL, not ${t.mode}` });
    }
  });
export type ServerTls = z.output<typeof serverTlsSchema>;

/** One server of a Gateway: a port, its hosts and TLS settings. */
export const gatewayServerSchema = z
  .strictObject({
    port: z.strictObject({
      number: portNumber,
      name: z.string().min(1).optional(),
      protocol: z.preprocess(upper, z.enum(SERVER_PROTOCOLS, { message: `expected ${SERVER_PROTOCOLS.join(', ')}` })),
      targetPort: unsupported('port.targetPort'),
    }),
    /** Address to bind (Istio's `bind`); absent = the gateway's default listen address. */
    bind: z.string().min(1).optional(),
    /** Lowercased, namespace part stripped: `app.example.com`, `*.example.com`, `*`. */
    hosts: z.array(gatewayHost).min(1),
    tls: serverTlsSchema.optional(),
    name: z.string().min(1).optional(),
    defaultEndpoint: unsupported('defaultEndpoint'),
  })
  .superRefine((s, ctx) => {
    const p = s.port.protocol;
    if ((p === 'HTTPS' || p === 'TLS') && s.tls === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: `protocol ${p} needs tls settings (mode and credentialName)` });
    }
    if (s.tls && (p === 'HTTP' || p === 'HTTP2' || p === 'GRPC' || p === 'TCP')) {
      const onlyRedirect = p === 'HTTP' && s.tls.httpsRedirect && s.tls.credentialName === undefined && s.tls.mode === 'PASSTHROUGH';
      if (!onlyRedirect) {
        ctx.addIssue({
          code: 'custom',
          path: ['tls'],
          message: `protocol ${p} is plaintext: only tls.httpsRedirect may be set on an HTTP server; use protocol HTTPS or TLS to terminate TLS`,
        });
      }
    }
  });
export type GatewayServer = z.output<typeof gatewayServerSchema>;

/** The spec of Istio's `Gateway` (networking.istio.io/v1, v1beta1, v1alpha3). */
export const gatewaySpecSchema = z.strictObject({
  /** Accepted and ignored: every Gateway in the file applies to this gateway process. */
  selector: z.record(z.string(), z.string()).optional(),
  servers: z.array(gatewayServerSchema).min(1),
});
export type GatewaySpec = z.output<typeof gatewaySpecSchema>;

/** Whether a server terminates TLS (SIMPLE, MUTUAL, ISTIO_MUTUAL on HTTPS or TLS). */
export function terminatesTls(s: GatewayServer): boolean {
  return (s.port.protocol === 'HTTPS' || s.port.protocol === 'TLS') && s.tls !== undefined && s.tls.mode !== 'PASSTHROUGH';
}
