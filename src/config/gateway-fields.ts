import { z } from 'zod';
import { parseDuration } from '../core/index.js';

/**
 * Small field schemas shared by the gateway file's kinds (Gateway, VirtualService, DestinationRule,
 * AuthorizationPolicy, GatewayOptions), in Istio's spelling.
 */

/** A field that Istio has but meshcert does not implement: absent is fine, present is a clear error. */
export function unsupported(message: string) {
  return z
    .unknown()
    .optional()
    .superRefine((v, ctx) => {
      if (v !== undefined) ctx.addIssue({ code: 'custom', message: `not supported by meshcert: ${message}` });
    });
}

/** Kubernetes object metadata. Fields kubectl adds on output (uid, resourceVersion…) are accepted and ignored. */
export const objectMetadata = z.strictObject({
  name: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, {
    message: 'expected a Kubernetes object name (lowercase letters, digits, "-" and ".")',
  }),
  namespace: z.string().min(1).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().optional(),
  creationTimestamp: z.unknown().optional(),
  managedFields: z.unknown().optional(),
});

export const portNumber = z.number().int().min(1).max(65535);

/** `{ number: 8080 }`, as Istio writes a port selector. */
export const portSelector = z.strictObject({ number: portNumber });

/** A duration where Istio allows "0s" (= no limit); milliseconds, 0 for none. */
export const durationOrZero = z.string().transform((text, ctx) => {
  if (/^\s*0+(\.0+)?(ms|s|m|h)?\s*$/.test(text)) return 0;
  try {
    return parseDuration(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (e.g. 500ms, 30s, 1m)` });
    return z.NEVER;
  }
});

const DNS_LABEL = /^[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?$/;

/** True for `*`, `*.example.com` or a DNS name (letters, digits, "-", "_"). */
export function isHostPattern(host: string): boolean {
  if (host === '*') return true;
  const rest = host.startsWith('*.') ? host.slice(2) : host;
  if (rest.length === 0 || rest.length > 253) return false;
  return rest.split('.').every((l) => l.length <= 63 && DNS_LABEL.test(l));
}

/**
 * A host as Istio writes it in Gateway servers: `host`, `*.host`, `*`, optionally `namespace/host` (also `./host`
 * and `*\/host`). The namespace part is stripped; the host is lowercased.
 */
export const gatewayHost = z
  .string()
  .min(1)
  .transform((raw, ctx) => {
    const slash = raw.indexOf('/');
    const host = (slash >= 0 ? raw.slice(slash + 1) : raw).trim().toLowerCase();
    if (!isHostPattern(host)) {
      ctx.addIssue({ code: 'custom', message: `"${raw}" is not a host: expected a DNS name, "*.example.com" or "*" (optionally "namespace/host")` });
      return z.NEVER;
    }
    return host;
  });

/** A host in a VirtualService (no namespace form): a DNS name, `*.suffix` or `*`; lowercased. */
export const routeHost = z
  .string()
  .min(1)
  .transform((raw, ctx) => {
    const host = raw.trim().toLowerCase();
    if (!isHostPattern(host)) {
      ctx.addIssue({ code: 'custom', message: `"${raw}" is not a host: expected a DNS name, "*.example.com" or "*"` });
      return z.NEVER;
    }
    return host;
  });

/** A destination host (a service name, no wildcards); lowercased. */
export const destinationHost = z
  .string()
  .min(1)
  .transform((raw, ctx) => {
    const host = raw.trim().toLowerCase();
    if (host.includes('*') || !isHostPattern(host)) {
      ctx.addIssue({ code: 'custom', message: `"${raw}" is not a destination host: expected a service name such as app-backend or app.ns.svc.cluster.local` });
      return z.NEVER;
    }
    return host;
  });

/** A reference to a Gateway in a VirtualService: `name` or `namespace/name` (the namespace is stripped), or `mesh`. */
export const gatewayRef = z
  .string()
  .min(1)
  .transform((raw) => {
    const slash = raw.indexOf('/');
    return slash >= 0 ? raw.slice(slash + 1) : raw;
  });

function compileRegex(pattern: string): RegExp | undefined {
  try {
    // Istio's regexes are RE2 and must match the whole value.
    return new RegExp(`^(?:${pattern})$`);
  } catch {
    return undefined;
  }
}

/**
 * Istio's StringMatch: exactly one of `exact`, `prefix`, `regex` (RE2, whole value). With `allowPresence`, an
 * empty `{}` means "present with any value" (as Istio does for headers).
 */
export function stringMatch(allowPresence = false) {
  return z
    .strictObject({
      exact: z.string().optional(),
      prefix: z.string().optional(),
      regex: z.string().optional(),
    })
    .superRefine((m, ctx) => {
      const n = [m.exact, m.prefix, m.regex].filter((v) => v !== undefined).length;
      if (n > 1 || (n === 0 && !allowPresence)) {
        ctx.addIssue({ code: 'custom', message: 'give exactly one of exact, prefix or regex' });
      }
      if (m.regex !== undefined && compileRegex(m.regex) === undefined) {
        ctx.addIssue({ code: 'custom', path: ['regex'], message: `"${m.regex}" is not a valid regular expression` });
      }
    })
    .transform((m): StringMatch => {
      if (m.exact !== undefined) return { kind: 'exact', value: m.exact };
      if (m.prefix !== undefined) return { kind: 'prefix', value: m.prefix };
      if (m.regex !== undefined) {
        const regex = compileRegex(m.regex)!;
        return { kind: 'regex', value: m.regex, regex, regexIgnoreCase: new RegExp(regex.source, 'i') };
      }
      return { kind: 'present' };
    });
}

/** A validated StringMatch; `regex` is compiled, anchored at both ends. */
export type StringMatch =
  | { kind: 'exact'; value: string }
  | { kind: 'prefix'; value: string }
  | { kind: 'regex'; value: string; regex: RegExp; regexIgnoreCase: RegExp }
  | { kind: 'present' };

/** Whether `value` satisfies `m` (undefined = absent, which only fails). `ignoreCase` for Istio's ignoreUriCase. */
export function stringMatches(m: StringMatch, value: string | undefined, ignoreCase = false): boolean {
  if (value === undefined) return false;
  switch (m.kind) {
    case 'present':
      return true;
    case 'exact':
      return ignoreCase ? value.toLowerCase() === m.value.toLowerCase() : value === m.value;
    case 'prefix':
      return ignoreCase ? value.toLowerCase().startsWith(m.value.toLowerCase()) : value.startsWith(m.value);
    case 'regex':
      return ignoreCase ? m.regexIgnoreCase.test(value) : m.regex.test(value);
  }
}
