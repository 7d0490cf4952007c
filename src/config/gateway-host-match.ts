/**
 * Host matching as Istio and Envoy do it: an exact host beats a wildcard, a longer wildcard suffix beats a shorter
 * one, and `*` comes last. `*.example.com` matches any name ending in `.example.com` (any depth), not the apex.
 */

/** Whether the host pattern (`app.example.com`, `*.example.com`, `*`) matches `host` (already lowercased). */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return host.length > pattern.length - 1 && host.endsWith(pattern.slice(1));
  return pattern === host;
}

/** How specific a pattern is: higher wins. Exact hosts rank above every wildcard, `*` ranks 0. */
export function hostSpecificity(pattern: string): number {
  if (pattern === '*') return 0;
  if (pattern.startsWith('*.')) return pattern.length;
  return 1_000_000 + pattern.length;
}

/** The best (most specific) pattern of `patterns` matching `host`, or undefined. */
export function bestHostMatch(patterns: Iterable<string>, host: string): string | undefined {
  let best: string | undefined;
  for (const p of patterns) {
    if (hostMatches(p, host) && (best === undefined || hostSpecificity(p) > hostSpecificity(best))) best = p;
  }
  return best;
}

/**
 * The host part of a Host / :authority header or SNI, lowercased, without a port (`app.test:8443` → `app.test`,
 * `[::1]:8443` → `::1`) and without a trailing dot.
 */
export function normalizeHost(value: string): string {
  let h = value.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    h = end > 0 ? h.slice(1, end) : h;
  } else {
    const colon = h.indexOf(':');
    // A single colon is a port separator; several colons are a bare IPv6 address.
    if (colon >= 0 && h.indexOf(':', colon + 1) < 0) h = h.slice(0, colon);
  }
  return h.endsWith('.') ? h.slice(0, -1) : h;
}
