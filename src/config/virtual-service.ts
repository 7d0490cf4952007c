import { z } from 'zod';
import { parseRetryOn } from './retry-on.js';
import {
  destinationHost,
  durationOrZero,
  gatewayRef,
  portNumber,
  portSelector,
  routeHost,
  stringMatch,
  unsupported,
} from './gateway-fields.js';

/** Where a route sends traffic: a destination host (mapped to an address by GatewayOptions.upstreams). */
export const destinationSchema = z.strictObject({
  host: destinationHost,
  /** Absent: the port of the upstream address in GatewayOptions (an error at load time if that has none). */
  port: portSelector.optional(),
  /** A subset of the DestinationRule for this host (its trafficPolicy applies). */
  subset: z.string().min(1).optional(),
});
export type Destination = z.output<typeof destinationSchema>;

const headerOps = z.strictObject({
  set: z.record(z.string().min(1), z.string()).optional(),
  add: z.record(z.string().min(1), z.string()).optional(),
  remove: z.array(z.string().min(1)).optional(),
});
/** Header changes on the way up (`request`) and down (`response`). */
export const headersSchema = z.strictObject({ request: headerOps.optional(), response: headerOps.optional() });
export type HeaderOperations = z.output<typeof headersSchema>;

/** A destination with its weight (relative; a single route without a weight gets 100). */
const weighted = <T extends z.ZodTypeAny>(extra: T) =>
  z.strictObject({
    destination: destinationSchema,
    weight: z.number().int().min(0).optional(),
    headers: extra,
  });

export const httpRouteDestinationSchema = weighted(headersSchema.optional());
export type HttpRouteDestination = z.output<typeof httpRouteDestinationSchema>;

/** One condition set of an HTTP route; every given field must hold (the entries of `match[]` are ORed). */
export const httpMatchSchema = z.strictObject({
  name: z.string().optional(),
  /** Path without the query string. */
  uri: stringMatch().optional(),
  scheme: stringMatch().optional(),
  method: stringMatch().optional(),
  /** The Host / :authority value as sent (with any port). */
  authority: stringMatch().optional(),
  /** Header names lowercased; `{}` = present with any value. */
  headers: z
    .record(z.string().min(1), stringMatch(true))
    .transform((h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v])))
    .optional(),
  queryParams: z.record(z.string().min(1), stringMatch(true)).optional(),
  /** The gateway port the request came in on. */
  port: portNumber.optional(),
  ignoreUriCase: z.boolean().default(false),
  /** Only for requests through these gateways (names; namespace part stripped). */
  gateways: z.array(gatewayRef).optional(),
  withoutHeaders: unsupported('withoutHeaders'),
  sourceLabels: unsupported('sourceLabels (no workload labels at a gateway)'),
  sourceNamespace: unsupported('sourceNamespace'),
  statPrefix: z.string().optional(),
});
export type HttpMatch = z.output<typeof httpMatchSchema>;

const checkWeights = (routes: ReadonlyArray<{ weight?: number | undefined }>, ctx: z.RefinementCtx) => {
  if (routes.length > 1 && routes.some((r) => r.weight === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['route'], message: 'with several destinations, give every one a weight' });
  }
  if (routes.length > 1 && routes.every((r) => r.weight === 0)) {
    ctx.addIssue({ code: 'custom', path: ['route'], message: 'the weights add up to 0' });
  }
};

/** An HTTP route: the first whose match holds wins (in file order). */
export const httpRouteSchema = z
  .strictObject({
    name: z.string().optional(),
    /** Absent or empty: matches every request. */
    match: z.array(httpMatchSchema).optional(),
    route: z.array(httpRouteDestinationSchema).min(1),
    /** Whole-request timeout in ms; 0 = none. */
    timeout: durationOrZero.optional(),
    /** Istio's HTTPRetry: the gateway retries as Envoy does (see src/gateway/retry-policy.ts). */
    retries: z
      .strictObject({
        attempts: z.number().int().min(0),
        perTryTimeout: durationOrZero.optional(),
        retryOn: z
          .string()
          .superRefine((v, ctx) => {
            const { unknown } = parseRetryOn(v);
            if (unknown.length) {
              ctx.addIssue({
                code: 'custom',
                message: `unknown retry condition ${unknown.map((u) => `"${u}"`).join(', ')}: use 5xx, gateway-error, reset, connect-failure, refused-stream, retriable-4xx, retriable-status-codes, an HTTP status (503), or a gRPC status (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable)`,
              });
            }
          })
          .optional(),
        retryRemoteLocalities: z.boolean().optional(),
      })
      .optional(),
    /** `uri` replaces the matched prefix (or the whole path for exact/regex); `authority` replaces the Host. */
    rewrite: z.strictObject({ uri: z.string().optional(), authority: z.string().optional() }).optional(),
    headers: headersSchema.optional(),
    redirect: unsupported('redirect (use Gateway tls.httpsRedirect for http→https)'),
    directResponse: unsupported('directResponse'),
    delegate: unsupported('delegate'),
    fault: unsupported('fault injection'),
    mirror: unsupported('mirror'),
    mirrors: unsupported('mirrors'),
    mirrorPercentage: unsupported('mirrorPercentage'),
    corsPolicy: unsupported('corsPolicy'),
  })
  .superRefine((r, ctx) => checkWeights(r.route, ctx));
export type HttpRoute = z.output<typeof httpRouteSchema>;

export const routeDestinationSchema = weighted(unsupported('headers on tls/tcp routes'));
export type RouteDestination = z.output<typeof routeDestinationSchema>;

/** A TLS (PASSTHROUGH) route by SNI. */
export const tlsRouteSchema = z
  .strictObject({
    match: z
      .array(
        z.strictObject({
          sniHosts: z.array(routeHost).min(1),
          port: portNumber.optional(),
          gateways: z.array(gatewayRef).optional(),
          destinationSubnets: unsupported('destinationSubnets'),
          sourceLabels: unsupported('sourceLabels'),
          sourceNamespace: unsupported('sourceNamespace'),
        }),
      )
      .min(1),
    route: z.array(routeDestinationSchema).min(1),
  })
  .superRefine((r, ctx) => checkWeights(r.route, ctx));
export type TlsRoute = z.output<typeof tlsRouteSchema>;

/** A TCP route (for TCP servers, and TLS PASSTHROUGH servers without a matching tls route). */
export const tcpRouteSchema = z
  .strictObject({
    match: z
      .array(
        z.strictObject({
          port: portNumber.optional(),
          gateways: z.array(gatewayRef).optional(),
          destinationSubnets: unsupported('destinationSubnets'),
          sourceLabels: unsupported('sourceLabels'),
          sourceNamespace: unsupported('sourceNamespace'),
        }),
      )
      .optional(),
    route: z.array(routeDestinationSchema).min(1),
  })
  .superRefine((r, ctx) => checkWeights(r.route, ctx));
export type TcpRoute = z.output<typeof tcpRouteSchema>;

/** The spec of Istio's `VirtualService`. */
export const virtualServiceSpecSchema = z
  .strictObject({
    hosts: z.array(routeHost).min(1),
    /** Gateway names (namespace part stripped). Absent = `mesh` only, which this gateway does not serve. */
    gateways: z.array(gatewayRef).default(['mesh']),
    http: z.array(httpRouteSchema).default([]),
    tls: z.array(tlsRouteSchema).default([]),
    tcp: z.array(tcpRouteSchema).default([]),
    exportTo: z.array(z.string()).optional(),
  })
  .superRefine((v, ctx) => {
    if (v.http.length + v.tls.length + v.tcp.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'give at least one of http, tls or tcp routes' });
    }
  });
export type VirtualServiceSpec = z.output<typeof virtualServiceSpecSchema>;
