import { z } from 'zod';
import { duration, listenAddress } from './fields.js';

/** The annotation values of kubernetes.io/ocsp-policy (config imports only core, so they are listed here too). */
const ocspPolicy = z
  .string()
  .transform((s) => s.trim().toUpperCase())
  .pipe(z.enum(['OPTIONAL', 'PREFERRED', 'MANDATORY'], { message: 'expected OPTIONAL, PREFERRED or MANDATORY' }));

/** `*` is allowed only as the last character (a prefix match), as in the rest of meshcert's patterns. */
const pattern = (what: string) =>
  z
    .string()
    .min(1)
    .refine((s) => !s.slice(0, -1).includes('*'), { message: `${what}: "*" may only end a pattern (a prefix match)` });

/**
 * The `sds` section of `meshcert serve`'s configuration: Envoy SDS for gateway secrets.
 *
 * ```yaml
 * sds:
 *   listen: 127.0.0.1:15011     # gRPC with TLS; absent = no TCP listener
 *   uds: /path/sds.sock         # plain gRPC on a Unix socket; the lead's default: <data-dir>/sds.sock when sds is on
 *   secrets: ./secrets          # folder of Secret manifests and/or mounted secret folders (or one file)
 *   clientCaFile: ca.pem        # require client certificates (mTLS) on `listen`
 *   certFile: sds.pem           # `listen`'s certificate chain and key, for running without a mesh CA
 *   keyFile: sds-key.pem
 *   authorization:              # with clientCaFile: client identity → resource names it may fetch
 *     spiffe://cluster.local/ns/istio-system/sa/ingress: [kubernetes://ingress-cert, kubernetes://ingress-cert-cacert]
 *   ocspPolicies:               # for secrets that carry no annotation (mounted folders); wins over the annotation
 *     ingress-cert: MANDATORY
 *   staples:                    # OCSP staples fetched from the certificates' responders (AIA)
 *     fetch: wanted             # wanted (default): policy declared, must-staple, or own staple; all; off
 *     timeout: 10s              # per request
 *     nonce: false              # send a nonce and require it echoed
 *     maxRetryInterval: 5m      # failures back off exponentially up to this
 * ```
 */
const staplesSchema = z.strictObject({
  fetch: z.enum(['wanted', 'all', 'off'], { message: 'expected wanted, all or off' }).optional(),
  timeout: duration
    .refine((ms) => ms >= 100 && ms <= 120_000, { message: 'expected between 100ms and 2m' })
    .optional(),
  nonce: z.boolean().optional(),
  maxRetryInterval: duration.refine((ms) => ms >= 5_000, { message: 'expected at least 5s' }).optional(),
});

export const sdsConfigSchema = z
  .strictObject({
    listen: listenAddress.optional(),
    uds: z
      .string()
      .min(1)
      .transform((s) => (s.startsWith('unix:') ? s.slice('unix:'.length) : s))
      .optional(),
    secrets: z.string().min(1),
    clientCaFile: z.string().min(1).optional(),
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
    authorization: z.record(z.string().min(1), z.array(pattern('resource name')).min(1)).optional(),
    ocspPolicies: z
      .record(
        z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, { message: 'expected a Secret name (lowercase letters, digits, "-" and ".")' }),
        ocspPolicy,
      )
      .optional(),
    staples: staplesSchema.optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.certFile === undefined) !== (c.keyFile === undefined)) {
      ctx.addIssue({ code: 'custom', path: [c.certFile === undefined ? 'certFile' : 'keyFile'], message: 'give certFile and keyFile together' });
    }
    if (c.certFile !== undefined && c.listen === undefined) {
      ctx.addIssue({ code: 'custom', path: ['certFile'], message: 'certFile and keyFile are the certificate of `listen`; set listen too' });
    }
    if (c.clientCaFile !== undefined && c.listen === undefined) {
      ctx.addIssue({ code: 'custom', path: ['clientCaFile'], message: 'client certificates are asked for on `listen`; set listen too' });
    }
    for (const identity of Object.keys(c.authorization ?? {})) {
      // Checked here rather than on the record key, where zod would only say "Invalid key in record".
      if (identity.slice(0, -1).includes('*')) {
        ctx.addIssue({ code: 'custom', path: ['authorization', identity], message: 'identity: "*" may only end a pattern (a prefix match)' });
      }
    }
    if (c.authorization !== undefined && c.clientCaFile === undefined) {
      ctx.addIssue({ code: 'custom', path: ['authorization'], message: 'authorization needs clientCaFile: identities come from client certificates' });
    }
  });

export type SdsConfig = z.output<typeof sdsConfigSchema>;
