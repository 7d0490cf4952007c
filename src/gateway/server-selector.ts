// SNI → the Gateway server that owns the host on one port: an exact host beats a wildcard, a longer wildcard suffix
// beats a shorter one, `*` catches the rest. A hello without SNI goes to the `*` server, or else to the first server
// of the port (the default), so that plain `openssl s_client` without -servername still meets a certificate.

export interface HostOwner {
  hosts: readonly string[];
}

export type Selection<T> = { server: T; matched: string } | undefined;

/** True when `pattern` (`host`, `*.suffix`, `*`) covers `name` (both lowercase). `*.a.b` does not cover `a.b`. */
export function hostMatches(pattern: string, name: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return name.length > pattern.length - 1 && name.endsWith(pattern.slice(1));
  return pattern === name;
}

export class ServerSelector<T extends HostOwner> {
  readonly #exact = new Map<string, T>();
  /** Wildcard suffixes ('.example.com') longest first. */
  readonly #wildcards: Array<{ suffix: string; pattern: string; server: T }> = [];
  readonly #catchAll: T | undefined;
  readonly #default: T | undefined;

  constructor(servers: readonly T[]) {
    let catchAll: T | undefined;
    for (const s of servers) {
      for (const raw of s.hosts) {
        const h = raw.toLowerCase();
        if (h === '*') catchAll ??= s;
        else if (h.startsWith('*.')) this.#wildcards.push({ suffix: h.slice(1), pattern: h, server: s });
        else if (!this.#exact.has(h)) this.#exact.set(h, s);
      }
    }
    this.#wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
    this.#catchAll = catchAll;
    this.#default = catchAll ?? servers[0];
  }

  select(serverName: string | undefined): Selection<T> {
    if (serverName === undefined || serverName === '') return this.#default ? { server: this.#default, matched: '(no SNI: default server)' } : undefined;
    const name = serverName.toLowerCase();
    const exact = this.#exact.get(name);
    if (exact) return { server: exact, matched: name };
    for (const w of this.#wildcards) if (name.endsWith(w.suffix) && name.length > w.suffix.length) return { server: w.server, matched: w.pattern };
    return this.#catchAll ? { server: this.#catchAll, matched: '*' } : undefined;
  }
}
