import { isIP } from 'node:net';
import { z } from 'zod';
import { unsupported } from './gateway-fields.js';

/** `*` may only start or end a value (Istio's prefix/suffix/presence matching); returns an error text or undefined. */
function wildcardProblem(v: string): string | undefined {
  if (v === '*') return undefined;
  const inner = v.slice(1, -1);
  if (inner.includes('*') || (v.startsWith('*') && v.endsWith('*') && v.length > 1)) {
    return `"${v}": "*" may only be the whole value, or start or end it`;
  }
  return undefined;
}

const values = (what: string) =>
  z.array(
    z.string().superRefine((v, ctx) => {
      const p = wildcardProblem(v);
      if (p) ctx.addIssue({ code: 'custom', message: `${what} ${p}` });
    }),
  );

const cidr = z.string().refine(
  (s) => {
    const [ip, bits, more] = s.split('/');
    if (more !== undefined || ip === undefined || !isIP(ip)) return false;
    if (bits === undefined) return true;
    const max = isIP(ip) === 4 ? 32 : 128;
    return /^\d{1,3}$/.test(bits) && Number(bits) <= max;
  },
  { message: 'expected an IP address or CIDR block (10.0.0.0/8, ::1)' },
);

/**
 * Who: principals are the peer's SPIFFE ID without `spiffe://` (`cluster.local/ns/NS/sa/SA`), namespaces its
 * `ns` part, ipBlocks the client address.
 */
export const sourceSchema = z.strictObject({
  principals: values('principal').optional(),
  notPrincipals: values('principal').optional(),
  namespaces: values('namespace').optional(),
  notNamespaces: values('namespace').optional(),
  ipBlocks: z.array(cidr).optional(),
  notIpBlocks: z.array(cidr).optional(),
  /** The gateway sees no proxy chain: remoteIpBlocks is the client address too. */
  remoteIpBlocks: z.array(cidr).optional(),
  notRemoteIpBlocks: z.array(cidr).optional(),
  requestPrincipals: unsupported('requestPrincipals (JWT request authentication)'),
  notRequestPrincipals: unsupported('notRequestPrincipals (JWT request authentication)'),
  serviceAccounts: unsupported('serviceAccounts; use principals'),
  notServiceAccounts: unsupported('notServiceAccounts; use notPrincipals'),
});
export type AuthorizationSource = z.output<typeof sourceSchema>;

/** What: the request's Host (port ignored), path (no query), method and gateway port. */
export const operationSchema = z.strictObject({
  hosts: values('host').optional(),
  notHosts: values('host').optional(),
  ports: z.array(z.string().regex(/^\d{1,5}$/, { message: 'expected a port number as a string ("8443")' })).optional(),
  notPorts: z.array(z.string().regex(/^\d{1,5}$/, { message: 'expected a port number as a string ("8443")' })).optional(),
  methods: values('method').optional(),
  notMethods: values('method').optional(),
  paths: values('path').optional(),
  notPaths: values('path').optional(),
});
export type AuthorizationOperation = z.output<typeof operationSchema>;

/** Condition keys meshcert evaluates; any other key is an error (never silently ignored). */
export const SUPPORTED_CONDITION_KEYS = [
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.principal',
  'destination.port',
  'connection.sni',
  'request.headers[NAME]',
] as const;

const conditionKey = z.string().superRefine((k, ctx) => {
  const plain = (SUPPORTED_CONDITION_KEYS as readonly string[]).includes(k);
  const header = /^request\.headers\[[^\]]+\]$/.test(k);
  if (!plain && !header) {
    ctx.addIssue({ code: 'custom', message: `condition key "${k}" is not supported by meshcert; supported: ${SUPPORTED_CONDITION_KEYS.join(', ')}` });
  }
});

export const conditionSchema = z
  .strictObject({
    key: conditionKey,
    values: z.array(z.string()).optional(),
    notValues: z.array(z.string()).optional(),
  })
  .refine((c) => (c.values?.length ?? 0) + (c.notValues?.length ?? 0) > 0, { message: 'give values or notValues' });
export type AuthorizationCondition = z.output<typeof conditionSchema>;

/**
 * One rule: it matches when one of `from` matches (absent = any source), one of `to` matches (absent = any
 * operation), and every `when` holds. Within a source or operation every given field must hold.
 */
export const ruleSchema = z.strictObject({
  from: z.array(z.strictObject({ source: sourceSchema })).optional(),
  to: z.array(z.strictObject({ operation: operationSchema })).optional(),
  when: z.array(conditionSchema).optional(),
});
export type AuthorizationRule = z.output<typeof ruleSchema>;

/**
 * The spec of Istio's `AuthorizationPolicy` (security.istio.io). Evaluation, as Istio: any matching DENY policy
 * denies; then, if there is any ALLOW policy, a request must match one; no ALLOW policy = allowed. An ALLOW
 * policy without rules matches nothing (allow-nothing); `rules: [{}]` matches everything.
 */
export const authorizationPolicySpecSchema = z.strictObject({
  action: z
    .string()
    .default('ALLOW')
    .transform((a, ctx) => {
      const u = a.trim().toUpperCase();
      if (u === 'ALLOW' || u === 'DENY') return u;
      ctx.addIssue({
        code: 'custom',
        message: u === 'AUDIT' || u === 'CUSTOM' ? `action ${u} is not supported by meshcert; use ALLOW or DENY` : `"${a}" is not an action: expected ALLOW or DENY`,
      });
      return z.NEVER;
    }),
  /** Accepted and ignored: every policy in the file applies to this gateway. */
  selector: z.unknown().optional(),
  targetRef: unsupported('targetRef'),
  targetRefs: unsupported('targetRefs'),
  provider: unsupported('provider (CUSTOM action)'),
  rules: z.array(ruleSchema).default([]),
});
export type AuthorizationPolicySpec = z.output<typeof authorizationPolicySpecSchema>;
