import { isIP } from 'node:net';
import { z } from 'zod';
import { duration, httpUrl, listenAddress } from './fields.js';
import { destinationHost, durationOrZero, isHostPattern, portNumber } from './gateway-fields.js';
import { ECDH_CURVE_NAMES, SIGNATURE_ALGORITHMS } from './gateway-tls-names.js';

/** An upstream address: `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address. Port absent = the route's port. */
const upstreamObject = z.strictObject({ address: z.string().min(1), port: portNumber.optional() });
export const upstreamAddress = z
  .unknown()
  .superRefine((v, ctx) => {
    if (typeof v === 'string') return;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const issue of upstreamObject.safeParse(v).error?.issues ?? []) ctx.addIssue(issue as never);
      return;
    }
    ctx.addIssue({ code: 'custom', message: `expected an address such as 127.0.0.1:8080, or { address, port }; got ${JSON.stringify(v)}` });
  })
  .transform((raw, ctx): UpstreamAddress => {
    const v = raw as string | z.output<typeof upstreamObject>;
    if (typeof v !== 'string') {
      if (!isIP(v.address) && !isHostPattern(v.address.toLowerCase())) {
        ctx.addIssue({ code: 'custom', path: ['address'], message: `"${v.address}" is not an IP address or host name` });
        return z.NEVER;
      }
      return v.port === undefined ? { host: v.address } : { host: v.address, port: v.port };
    }
    const s = v.trim();
    if (isIP(s)) return { host: s };
    const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(s);
    const host = m ? (m[1] ?? m[2])! : '';
    const port = m?.[3] === undefined ? undefined : Number(m[3]);
    const hostOk = m !== null && (m[1] !== undefined ? isIP(host) === 6 : isIP(host) === 4 || (isHostPattern(host.toLowerCase()) && !host.includes('*')));
    if (!hostOk || (port !== undefined && (port < 1 || port > 65535))) {
      ctx.addIssue({ code: 'custom', message: `"${v}" is not an upstream address: expected HOST, HOST:PORT or [IPv6]:PORT (e.g. 127.0.0.1:8080)` });
      return z.NEVER;
    }
    return port === undefined ? { host } : { host, port };
  });
/** Where a destination host is reached. */
export interface UpstreamAddress {
  host: string;
  port?: number;
}

const ecdhCurves = z
  .array(z.enum(ECDH_CURVE_NAMES, { message: `unknown curve; expected ${ECDH_CURVE_NAMES.join(', ')}` }))
  .min(1);
const signatureAlgorithms = z
  .array(z.enum(SIGNATURE_ALGORITHMS, { message: `unknown signature algorithm; expected one of ${SIGNATURE_ALGORITHMS.join(', ')}` }))
  .min(1);

const allowDeny = z.enum(['allow', 'deny'], { message: 'expected allow or deny' });

/** Asynchronous client-certificate validators (issue #9) for one server port, or every MUTUAL server. */
export const validationSchema = z
  .strictObject({
    /** Which server port; absent = every MUTUAL / ISTIO_MUTUAL server. */
    port: portNumber.optional(),
    /** Ask the client certificate's OCSP responder (AIA); answers cached until nextUpdate. */
    ocsp: z
      .strictObject({
        timeout: duration.prefault('2s'),
        /** What an `unknown` answer does. */
        onUnknown: allowDeny.default('deny'),
        /** What an unreachable responder, a timeout or a broken answer does (also: no OCSP URL in the certificate). */
        onError: allowDeny.default('deny'),
      })
      .optional(),
    /** POST `{chain, sni, alpn, remoteAddress}` to `url`, expect `{allow, reason}`. */
    http: z
      .strictObject({
        url: httpUrl,
        timeout: duration.prefault('1s'),
        /** On timeout or error: allow (true) or deny (false). */
        failOpen: z.boolean().default(false),
      })
      .optional(),
  })
  .refine((v) => v.ocsp !== undefined || v.http !== undefined, { message: 'give ocsp or http (or both)' });
export type ValidationConfig = z.output<typeof validationSchema>;

/** TLS settings for one server port, over the mesh-wide ones. */
export const portOptionsSchema = z.strictObject({
  port: portNumber,
  ecdhCurves: ecdhCurves.optional(),
  signatureAlgorithms: signatureAlgorithms.optional(),
  onlyVerifyLeafCertCrl: z.boolean().optional(),
});
export type PortOptions = z.output<typeof portOptionsSchema>;

/**
 * The spec of meshcert's `GatewayOptions` (apiVersion meshcert.dev/v1): what Istio keeps outside its resources.
 *
 * ```yaml
 * apiVersion: meshcert.dev/v1
 * kind: GatewayOptions
 * spec:
 *   upstreams: { app-backend: 127.0.0.1:8080 }   # destination host → address[:port]
 *   ecdhCurves: [X25519, P-256]                  # mesh-wide; per port under ports[]
 *   signatureAlgorithms: [ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256]
 *   ports: [{ port: 8443, ecdhCurves: [P-256] }]
 *   onlyVerifyLeafCertCrl: false
 *   trustDomain: cluster.local                   # ISTIO_MUTUAL peers must be in it
 *   timeouts: { handshake: 10s, idle: 1h, request: 0s, upstreamConnect: 5s }
 *   limits: { maxConnections: 10000, maxHeaderSize: 61440 }
 *   validation: [{ port: 8443, ocsp: { timeout: 2s, onUnknown: deny, onError: deny } }]
 *   accessLog: { path: "-", format: json }
 *   admin: { listen: 127.0.0.1:15000 }
 * ```
 */
export const gatewayOptionsSpecSchema = z.strictObject({
  /** Destination host (as in VirtualService/DestinationRule, lowercased) → address. */
  upstreams: z
    .record(z.string(), upstreamAddress)
    .superRefine((u, ctx) => {
      for (const host of Object.keys(u)) {
        if (!destinationHost.safeParse(host).success) {
          ctx.addIssue({ code: 'custom', path: [host], message: `"${host}" is not a destination host (a service name such as app-backend)` });
        }
      }
    })
    .transform((u) => Object.fromEntries(Object.entries(u).map(([k, v]) => [k.trim().toLowerCase(), v])))
    .default({}),
  /** Mesh-wide ECDH curves (Envoy's names); absent = Node's default. */
  ecdhCurves: ecdhCurves.optional(),
  /** Mesh-wide TLS signature schemes; absent = Node's default. */
  signatureAlgorithms: signatureAlgorithms.optional(),
  /** Per server port TLS settings, over the mesh-wide ones. */
  ports: z.array(portOptionsSchema).default([]),
  /** CRL checks on the client leaf only (Envoy's only_verify_leaf_cert_crl); default: the whole chain. */
  onlyVerifyLeafCertCrl: z.boolean().default(false),
  /** Trust domain ISTIO_MUTUAL peers must belong to. */
  trustDomain: z.string().min(1).default('cluster.local'),
  /** All in milliseconds; 0 = none. */
  timeouts: z
    .strictObject({
      /** From accept to the end of the TLS handshake (ClientHello read included). */
      handshake: duration.prefault('10s'),
      /** A connection with no request in flight is closed after this. */
      idle: durationOrZero.prefault('1h'),
      /** Whole request, upstream response included; 0 = none (a VirtualService timeout wins). */
      request: durationOrZero.prefault('0s'),
      upstreamConnect: duration.prefault('5s'),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /** Open downstream connections per gateway process. */
      maxConnections: z.number().int().min(1).default(10_000),
      /** Request header bytes (Node's maxHeaderSize); Envoy's default is 60 KiB. */
      maxHeaderSize: z.number().int().min(1024).max(1_048_576).default(61_440),
    })
    .prefault({}),
  validation: z.array(validationSchema).default([]),
  /** One line per request; path "-" = stdout. Absent = on, JSON to stdout. */
  accessLog: z
    .strictObject({
      enabled: z.boolean().default(true),
      path: z.string().min(1).default('-'),
      format: z.enum(['json', 'text']).default('json'),
    })
    .prefault({}),
  admin: z.strictObject({ listen: listenAddress }).optional(),
});
export type GatewayOptionsSpec = z.output<typeof gatewayOptionsSpecSchema>;

/** The options when the file has no GatewayOptions document. */
export function defaultGatewayOptions(): GatewayOptionsSpec {
  return gatewayOptionsSpecSchema.parse({});
}
