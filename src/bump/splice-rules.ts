/**
 * Which hosts are tunnelled raw (spliced) instead of bumped. Patterns are exact host names or `*.example.com`,
 * which matches every name below example.com (any depth) but not example.com itself, as Squid's dstdomain `.x`
 * minus the apex. Matching is case-insensitive and ignores a trailing dot.
 */
export type BumpAction = 'bump' | 'splice';

export interface SpliceRulesOptions {
  splice?: string[];
  bump?: string[];
  /** For hosts no pattern names, and for connections without a host name at all (default bump). */
  default?: BumpAction;
}

function normalize(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

class HostPatterns {
  readonly #exact = new Set<string>();
  readonly #suffixes: string[] = [];
  constructor(patterns: string[]) {
    for (const p of patterns.map(normalize)) {
      if (p.startsWith('*.')) this.#suffixes.push(p.slice(1));
      else this.#exact.add(p);
    }
  }
  matches(host: string): boolean {
    if (this.#exact.has(host)) return true;
    for (const s of this.#suffixes) if (host.length > s.length && host.endsWith(s)) return true;
    return false;
  }
}

export class SpliceRules {
  readonly #splice: HostPatterns;
  readonly #bump: HostPatterns;
  readonly #default: BumpAction;

  constructor(options: SpliceRulesOptions = {}) {
    this.#splice = new HostPatterns(options.splice ?? []);
    this.#bump = new HostPatterns(options.bump ?? []);
    this.#default = options.default ?? 'bump';
  }

  /** Splice rules win over bump rules: a host listed as never-bump is never bumped. */
  actionFor(host: string | undefined): BumpAction {
    if (!host) return this.#default;
    const h = normalize(host);
    if (this.#splice.matches(h)) return 'splice';
    if (this.#bump.matches(h)) return 'bump';
    return this.#default;
  }
}
