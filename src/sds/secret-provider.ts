import { resourceTarget, type SecretEntry, type SecretSource } from '../secrets/index.js';
import { secretResource, tlsPayload, validationPayload, type SecretPayload, type SecretResource } from './secret-resource.js';

/** What the SDS server may send for a resource name right now. */
export type ResourceState =
  | { state: 'ready'; resource: SecretResource }
  /** Known, but not to be sent (the stapling policy, an invalid first version): Envoy keeps what it has. */
  | { state: 'withheld'; reason: string }
  /** Not known to this provider. */
  | { state: 'absent'; reason: string };

/** Names that may have changed; null means any. */
export type ResourceChangeListener = (names: readonly string[] | null) => void;

/** Where the SDS server gets its secrets: gateway secrets from files, the agent's own certificate, tests. */
export interface SecretProvider {
  resolve(name: string): ResourceState;
  subscribe(listener: ResourceChangeListener): () => void;
}

/**
 * Gateway secrets (a SecretSource) as SDS resources, with Istio's names: `kubernetes://NAME` is the server side
 * of secret NAME, sent with or without its staple, or withheld, as DESIGN.md's stapling table says;
 * `kubernetes://NAME-cacert` is the CA side of a separate NAME-cacert secret when one exists, else ca.crt/ca.crl of
 * NAME. Resources are cached per version, so thousands of streams share one object and one digest.
 */
export class GatewaySecretProvider implements SecretProvider {
  readonly #source: SecretSource;
  readonly #cache = new Map<string, { key: string; state: ResourceState }>();

  constructor(source: SecretSource) {
    this.#source = source;
  }

  resolve(name: string): ResourceState {
    const target = resourceTarget(name);
    if (!target) return { state: 'absent', reason: `${name} is not a Kubernetes secret name (kubernetes://NAME or kubernetes://NAME-cacert)` };
    let entry: SecretEntry | undefined = this.#source.get(target.secret);
    if (target.side === 'ca' && !entry && target.fallback) entry = this.#source.get(target.fallback);
    if (!entry) return { state: 'absent', reason: `no secret ${target.secret}${target.fallback ? ` or ${target.fallback}` : ''}` };
    const served = entry.served;
    if (!served) {
      const why = entry.rejected?.problems.find((p) => p.severity === 'error')?.message ?? 'invalid';
      return { state: 'withheld', reason: `secret ${entry.name} has no valid version: ${why}` };
    }
    const { secret, evaluation } = served;
    let payload: SecretPayload;
    let key: string;
    if (target.side === 'tls') {
      if (!secret.tls || !evaluation.decision) return { state: 'absent', reason: `secret ${entry.name} has no certificate and key` };
      const action = evaluation.decision.sds.action;
      if (action === 'withhold') return { state: 'withheld', reason: `secret ${entry.name}: ${evaluation.decision.sds.reason}` };
      key = `${secret.digest}:${action}`;
      const hit = this.#cache.get(name);
      if (hit && hit.key === key) return hit.state;
      payload = tlsPayload(secret.tls, action === 'send-with-staple');
    } else {
      if (!secret.ca) return { state: 'absent', reason: `secret ${entry.name} has no ca.crt (or cacert)` };
      key = `${secret.digest}:ca`;
      const hit = this.#cache.get(name);
      if (hit && hit.key === key) return hit.state;
      payload = validationPayload(secret.ca);
    }
    const state: ResourceState = { state: 'ready', resource: secretResource(name, payload) };
    this.#cache.set(name, { key, state });
    return state;
  }

  subscribe(listener: ResourceChangeListener): () => void {
    return this.#source.onChange((change) => {
      const names = new Set<string>();
      for (const n of change.names) {
        names.add(`kubernetes://${n}`);
        names.add(`kubernetes://${n}-cacert`);
        // A NAME-cacert secret appearing or going changes where kubernetes://NAME-cacert comes from.
        if (n.endsWith('-cacert')) names.add(`kubernetes://${n}`);
      }
      listener([...names]);
    });
  }
}

/**
 * Resources set by code: the agent's `default` and `ROOTCA`, tests. `set` replaces a resource, `withhold` keeps it
 * known but unsent, `remove` forgets it; subscribers hear of each.
 */
export class StaticSecretProvider implements SecretProvider {
  readonly #states = new Map<string, ResourceState>();
  readonly #listeners = new Set<ResourceChangeListener>();

  set(name: string, payload: SecretPayload): SecretResource {
    const resource = secretResource(name, payload);
    this.#states.set(name, { state: 'ready', resource });
    this.#notify([name]);
    return resource;
  }

  withhold(name: string, reason: string): void {
    this.#states.set(name, { state: 'withheld', reason });
    this.#notify([name]);
  }

  remove(name: string): void {
    this.#states.delete(name);
    this.#notify([name]);
  }

  resolve(name: string): ResourceState {
    return this.#states.get(name) ?? { state: 'absent', reason: `no resource ${name}` };
  }

  subscribe(listener: ResourceChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(names: string[]): void {
    for (const l of [...this.#listeners]) l(names);
  }
}

/** Several providers as one: the first that knows a name (ready or withheld) answers for it. */
export function combineProviders(...providers: SecretProvider[]): SecretProvider {
  return {
    resolve(name) {
      let last: ResourceState = { state: 'absent', reason: `no resource ${name}` };
      for (const p of providers) {
        const s = p.resolve(name);
        if (s.state !== 'absent') return s;
        last = s;
      }
      return last;
    },
    subscribe(listener) {
      const offs = providers.map((p) => p.subscribe(listener));
      return () => offs.forEach((off) => off());
    },
  };
}
