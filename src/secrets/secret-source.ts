import { watch, type FSWatcher } from 'node:fs';
import { basename, resolve, sep } from 'node:path';
import { describeError, silentLogger, systemClock, type Clock, type Logger } from '../core/index.js';
import { buildGatewaySecret, evaluateSecret, rawDigest, withFetchedStaple, type GatewaySecret, type SecretEvaluation } from './gateway-secret.js';
import { secretError, secretWarning, type RawSecret, type SecretProblem } from './raw-secret.js';
import { listOrigins, loadOrigin, originSignature, type LoadedOrigin, type SecretOrigin } from './secret-files.js';
import { effectivePolicy, type OcspPolicy } from './stapling-policy.js';
import { chooseStaple, type StapleSupplier, type StapleTarget } from './staple-supplier.js';

export interface SecretSourceOptions {
  /** Folders of manifests and/or mounted secret folders, manifest files, or single mounted secret folders. */
  paths: readonly string[];
  clock?: Clock;
  logger?: Logger;
  /** Stapling policy by secret name, for secrets that cannot carry the annotation (mounted folders); wins over it. */
  policies?: Readonly<Record<string, OcspPolicy>>;
  /** Quiet time after a file event before re-reading, so that a burst of writes is read once. Default 50 ms. */
  debounceMs?: number;
  /** Rescan this often whatever fs.watch says (it misses events on some filesystems). Default 500 ms. */
  pollIntervalMs?: number;
  /** Watch at all; off for one-shot reads. Default true. */
  watch?: boolean;
  /**
   * Fetched OCSP staples (the StapleRefresher, or a read-only cache): told which certificates the secrets hold
   * after every scan; its newest staple replaces a secret's own when chooseStaple says so, and a change of it is a
   * new served version of the secrets concerned.
   */
  staples?: StapleSupplier;
}

/** The version of a secret in force: the newest one that was valid. */
export interface ServedVersion {
  secret: GatewaySecret;
  /** The stapling decisions at `evaluation.at`; refreshed when the clock changes them. */
  evaluation: SecretEvaluation;
  loadedAt: Date;
  /** The version as read from the files; `secret` differs from it when a fetched staple is served instead of its own. */
  fileSecret: GatewaySecret;
}

/** A newer version that was refused; the served one (if any) stays. */
export interface RejectedVersion {
  problems: SecretProblem[];
  source: string;
  at: Date;
  /** When it parsed but the stapling policy refused it: what it was, for reports. */
  candidate?: { secret: GatewaySecret; evaluation: SecretEvaluation; fileSecret: GatewaySecret };
}

export interface SecretEntry {
  name: string;
  served: ServedVersion | null;
  rejected: RejectedVersion | null;
}

export interface SecretChange {
  /** Secrets whose served version or stapling decision changed, or that appeared or went away. */
  names: string[];
}

export type SecretChangeListener = (change: SecretChange) => void;

interface EntryState extends SecretEntry {
  /** Digest of the newest version seen (served or refused), to skip re-building an unchanged secret. */
  latestDigest: string | null;
  latestProblemText: string | null;
}

interface OriginState {
  signature: string;
  loaded: LoadedOrigin;
  /** The secrets it held when it last read well: they keep their last good version while it is broken. */
  names: string[];
}

/** Origin-level findings: unusable paths, broken files, duplicates, documents that are not Secrets. */
export interface OriginReport {
  path: string;
  problems: SecretProblem[];
  ignored: string[];
}

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function decisionKey(ev: SecretEvaluation): string {
  return [ev.staple?.state ?? '-', ev.decision?.gateway.action ?? '-', ev.decision?.sds.action ?? '-', ...ev.crls.map((c) => String(c.current))].join('|');
}

/**
 * Gateway secrets from files, kept current: watches the folders (and every mounted secret folder, where the
 * kubelet swaps `..data`), rescans on events and on a short poll, and tells subscribers what changed within a
 * second. Each secret stands alone: a version that is invalid (unparsable, key not matching, bad annotation, or
 * refused by the stapling policy) is reported and the last good version stays served; a broken file keeps the
 * last good versions of the secrets it held. Stapling decisions depend on the clock, so they are re-evaluated on a
 * timer set to the next instant one of them can change (a staple's nextUpdate), without any file event.
 */
export class SecretSource {
  readonly #paths: readonly string[];
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #policies: Readonly<Record<string, OcspPolicy>>;
  readonly #debounceMs: number;
  readonly #pollMs: number;
  readonly #watching: boolean;
  readonly #origins = new Map<string, OriginState>();
  readonly #entries = new Map<string, EntryState>();
  readonly #listeners = new Set<SecretChangeListener>();
  readonly #watchers = new Map<string, FSWatcher>();
  #originReports: OriginReport[] = [];
  #debounce: NodeJS.Timeout | null = null;
  #poll: NodeJS.Timeout | null = null;
  #reevaluateTimer: NodeJS.Timeout | null = null;
  readonly #staples: StapleSupplier | null;
  #stapleOff: (() => void) | null = null;
  #trackedSignature: string | null = null;
  #closed = false;
  #generation = 0;

  constructor(options: SecretSourceOptions) {
    this.#paths = [...options.paths];
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#policies = options.policies ?? {};
    this.#debounceMs = options.debounceMs ?? 50;
    this.#pollMs = options.pollIntervalMs ?? 500;
    this.#watching = options.watch ?? true;
    this.#staples = options.staples ?? null;
    if (this.#staples) this.#stapleOff = this.#staples.onChange((names) => this.#staplesChanged(names));
  }

  /** Reads everything once and starts watching. */
  static open(options: SecretSourceOptions): SecretSource {
    const source = new SecretSource(options);
    source.reload();
    if (source.#watching) source.#poll = setInterval(() => source.reload(), source.#pollMs).unref();
    return source;
  }

  /** How many times the secrets were (re)read or re-evaluated with a change; for tests and metrics. */
  get generation(): number {
    return this.#generation;
  }

  get(name: string): SecretEntry | undefined {
    const e = this.#entries.get(name);
    return e ? { name: e.name, served: e.served, rejected: e.rejected } : undefined;
  }

  /** Every secret known, by name. */
  entries(): SecretEntry[] {
    return [...this.#entries.values()]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((e) => ({ name: e.name, served: e.served, rejected: e.rejected }));
  }

  origins(): OriginReport[] {
    return this.#originReports;
  }

  onChange(listener: SecretChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Rescans now: reads what changed since the last scan, and tells subscribers. Synchronous; never throws. */
  reload(): void {
    if (this.#closed) return;
    let changed: string[] = [];
    try {
      changed = this.#rescan();
    } catch (err) {
      // A bug here must not stop the watcher: log it, keep what is served, try again on the next event.
      this.#logger.error({ err: describeError(err) }, 'secret scan failed');
    }
    this.#trackStaples();
    this.#scheduleReevaluation();
    this.#emit(changed);
  }

  /** Re-applies the stapling rules at the clock's now (the timer does this by itself; tests with a ManualClock call it). */
  reevaluate(): void {
    if (this.#closed) return;
    const changed = this.#reevaluateAll();
    this.#scheduleReevaluation();
    this.#emit(changed);
  }

  close(): void {
    this.#closed = true;
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#poll) clearInterval(this.#poll);
    if (this.#reevaluateTimer) clearTimeout(this.#reevaluateTimer);
    this.#stapleOff?.();
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    this.#listeners.clear();
  }

  #emit(names: string[]): void {
    if (names.length === 0) return;
    this.#generation++;
    const change = { names: [...new Set(names)].sort() };
    for (const l of [...this.#listeners]) {
      try {
        l(change);
      } catch (err) {
        this.#logger.error({ err: describeError(err) }, 'secret change listener failed');
      }
    }
  }

  #scheduleRescan(): void {
    if (this.#closed || this.#debounce) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      this.reload();
    }, this.#debounceMs);
    this.#debounce.unref();
  }

  #updateWatchers(dirs: string[]): void {
    if (!this.#watching) return;
    const wanted = new Set(dirs);
    for (const [dir, w] of this.#watchers) {
      if (!wanted.has(dir)) {
        w.close();
        this.#watchers.delete(dir);
      }
    }
    for (const dir of wanted) {
      if (this.#watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, () => this.#scheduleRescan());
        w.on('error', () => {
          // The folder went away (a mounted secret deleted): the poll notices, the next scan re-adds it if it returns.
          w.close();
          if (this.#watchers.get(dir) === w) this.#watchers.delete(dir);
          this.#scheduleRescan();
        });
        this.#watchers.set(dir, w);
      } catch {
        // Not watchable right now; the poll covers it.
      }
    }
  }

  #rescan(): string[] {
    const now = this.#clock.now();
    const listing = listOrigins(this.#paths);
    this.#updateWatchers(listing.watchDirs);
    const reports = new Map<string, OriginReport>();
    const report = (path: string): OriginReport => {
      let r = reports.get(path);
      if (!r) reports.set(path, (r = { path, problems: [], ignored: [] }));
      return r;
    };
    for (const p of listing.problems) report(p.path).problems.push(p.problem);

    const raws = new Map<string, RawSecret>();
    const refusedByName = new Map<string, { problems: SecretProblem[]; source: string }>();
    const refuse = (name: string, source: string, problem: SecretProblem) => {
      const r = refusedByName.get(name);
      if (r) r.problems.push(problem);
      else refusedByName.set(name, { problems: [problem], source });
    };
    const live = new Set<string>();
    for (const origin of listing.origins) {
      live.add(origin.path);
      const state = this.#readOrigin(origin);
      const loaded = state.loaded;
      const r = report(origin.path);
      r.ignored.push(...loaded.ignored);
      if (loaded.fileError) {
        r.problems.push(loaded.fileError);
        for (const name of state.names) refuse(name, origin.path, loaded.fileError);
        continue;
      }
      for (const p of loaded.problems) {
        if (p.name) refuse(p.name, p.source, p.problem);
        else r.problems.push(p.problem);
      }
      for (const raw of loaded.secrets) {
        const first = raws.get(raw.name);
        if (first) {
          r.problems.push(secretWarning('duplicate', `${raw.source}: secret ${raw.name} is already defined in ${first.source}; this copy is ignored`));
          continue;
        }
        raws.set(raw.name, raw);
      }
    }
    // A configured path that cannot be read right now (unmounted, permissions) is not a deletion of every secret
    // under it: they keep their last good version, reported; a file gone from a readable folder is a deletion.
    const unreadable = listing.problems.map((p) => ({ root: resolve(p.path), problem: p.problem }));
    for (const [path, state] of [...this.#origins]) {
      if (live.has(path)) continue;
      const gone = unreadable.find((u) => path === u.root || path.startsWith(`${u.root}${sep}`));
      if (gone) for (const name of state.names) refuse(name, path, gone.problem);
      else this.#origins.delete(path);
    }
    this.#originReports = [...reports.values()].filter((r) => r.problems.length || r.ignored.length);

    const changed: string[] = [];
    const names = new Set<string>([...raws.keys(), ...refusedByName.keys(), ...this.#entries.keys()]);
    for (const name of names) {
      const raw = raws.get(name);
      const entry = this.#entries.get(name);
      if (raw) {
        if (this.#apply(name, raw, now)) changed.push(name);
      } else if (refusedByName.has(name)) {
        const { problems, source } = refusedByName.get(name)!;
        this.#refuse(name, entry, { problems, source, at: now }, null);
      } else if (entry) {
        this.#entries.delete(name);
        this.#logger.info({ secret: name }, 'secret removed');
        if (entry.served) changed.push(name);
      }
    }
    return changed;
  }

  #readOrigin(origin: SecretOrigin): OriginState {
    const prev = this.#origins.get(origin.path);
    const signature = originSignature(origin);
    if (prev && prev.signature === signature) return prev;
    const loaded = loadOrigin(origin);
    let names: string[];
    if (loaded.fileError) names = prev?.names ?? (origin.kind === 'mounted' ? [basename(origin.path)] : []);
    else names = [...loaded.secrets.map((s) => s.name), ...loaded.problems.flatMap((p) => (p.name ? [p.name] : []))];
    const state = { signature, loaded, names };
    this.#origins.set(origin.path, state);
    return state;
  }

  /** Builds and judges a raw version; true when what is served changed. */
  #apply(name: string, raw: RawSecret, now: Date): boolean {
    const policy = this.#policies[name];
    const options = policy ? { policy } : {};
    const digest = rawDigest(raw, options);
    const entry = this.#entries.get(name);
    if (entry && entry.latestDigest === digest) return false;
    let built;
    try {
      built = buildGatewaySecret(raw, options);
    } catch (err) {
      built = { ok: false as const, name, source: raw.source, problems: [secretError('manifest', `secret ${name} (${raw.source}): ${describeError(err)}`)] };
    }
    if (!built.ok) {
      this.#refuse(name, entry, { problems: built.problems, source: raw.source, at: now }, digest);
      return false;
    }
    const fileSecret = built.secret;
    const secret = this.#effective(fileSecret, now);
    const evaluation = evaluateSecret(secret, now);
    if (evaluation.decision?.gateway.action === 'reject') {
      const problems = [secretError('policy', `secret ${name} (${raw.source}): ${evaluation.decision.gateway.reason}`), ...evaluation.warnings, ...built.secret.warnings];
      this.#refuse(name, entry, { problems, source: raw.source, at: now, candidate: { secret, evaluation, fileSecret } }, digest);
      return false;
    }
    const served: ServedVersion = { secret, evaluation, loadedAt: now, fileSecret };
    this.#entries.set(name, { name, served, rejected: null, latestDigest: digest, latestProblemText: null });
    const warnings = [...built.secret.warnings, ...evaluation.warnings];
    this.#logger.info(
      {
        secret: name,
        source: raw.source,
        policy: evaluation.policy?.policy,
        staple: evaluation.staple?.state,
        ...(secret.tls?.fetchedStaple ? { stapleFrom: secret.tls.fetchedStaple.url } : {}),
        sds: evaluation.decision?.sds.action,
        ...(warnings.length ? { warnings: warnings.map((w) => w.message) } : {}),
      },
      entry?.served ? 'secret updated' : 'secret loaded',
    );
    return true;
  }

  #refuse(name: string, entry: EntryState | undefined, rejected: RejectedVersion, digest: string | null): void {
    const text = rejected.problems.map((p) => p.message).join('\n');
    const next: EntryState = entry
      ? { ...entry, rejected, latestDigest: digest }
      : { name, served: null, rejected, latestDigest: digest, latestProblemText: null };
    if (next.latestProblemText !== text) {
      // Once per distinct failure, not on every poll.
      this.#logger.warn(
        { secret: name, source: rejected.source, problems: rejected.problems.filter((p) => p.severity === 'error').map((p) => p.message) },
        entry?.served ? 'secret version refused; the last good version stays served' : 'secret refused; nothing is served for it',
      );
    }
    next.latestProblemText = text;
    this.#entries.set(name, next);
  }

  #reevaluateAll(): string[] {
    const now = this.#clock.now();
    const changed: string[] = [];
    for (const entry of this.#entries.values()) if (this.#refreshEntry(entry, now)) changed.push(entry.name);
    return changed;
  }

  /** A secret's file version with the staple chooseStaple prefers: its own, or the supplier's fetched one. */
  #effective(fileSecret: GatewaySecret, now: Date): GatewaySecret {
    const tls = fileSecret.tls;
    if (!this.#staples || !tls || !tls.issuer) return fileSecret;
    const leaf = tls.chain[0]!;
    let fetched;
    try {
      fetched = this.#staples.staple(leaf, tls.issuer);
    } catch (err) {
      this.#logger.error({ secret: fileSecret.name, err: describeError(err) }, 'staple supplier failed');
      return fileSecret;
    }
    if (!fetched) return fileSecret;
    const pick = chooseStaple({ leaf, issuer: tls.issuer, user: tls.staple, fetched: fetched.der, at: now });
    return pick === 'fetched' ? withFetchedStaple(fileSecret, fetched) : fileSecret;
  }

  /**
   * Re-judges one secret at `now` with the newest staple: the version in force (a changed staple is a new served
   * version; a decision changed by the clock is re-announced), and a refused version whose only fault was its
   * stapling policy (MANDATORY without a staple, say), which is served as soon as a fetched staple satisfies it.
   * True when what is served changed.
   */
  #refreshEntry(entry: EntryState, now: Date): boolean {
    const cand = entry.rejected?.candidate;
    if (cand && entry.rejected) {
      const secret = this.#effective(cand.fileSecret, now);
      const evaluation = evaluateSecret(secret, now);
      if (evaluation.decision?.gateway.action !== 'reject') {
        entry.served = { secret, evaluation, loadedAt: now, fileSecret: cand.fileSecret };
        entry.rejected = null;
        entry.latestProblemText = null;
        this.#logger.info(
          { secret: entry.name, source: secret.source, staple: evaluation.staple?.state, sds: evaluation.decision?.sds.action, stapleFrom: secret.tls?.fetchedStaple?.url },
          'secret accepted: its stapling policy is met now',
        );
        return true;
      }
      entry.rejected = { ...entry.rejected, candidate: { secret, evaluation, fileSecret: cand.fileSecret } };
    }
    if (!entry.served) return false;
    const before = entry.served;
    const secret = this.#effective(before.fileSecret, now);
    const ev = evaluateSecret(secret, now);
    if (ev.decision?.gateway.action === 'reject') {
      // A version already in force cannot be un-accepted: its certificate is simply not used any more.
      ev.decision = { ...ev.decision, gateway: { action: 'fail-handshake', reason: `${ev.decision.gateway.reason} (found while in force)` } };
    }
    entry.served = { ...before, secret, evaluation: ev };
    const stapleChanged = secret.digest !== before.secret.digest;
    if (!stapleChanged && decisionKey(ev) === decisionKey(before.evaluation)) return false;
    this.#logger.info(
      {
        secret: entry.name,
        staple: ev.staple?.state,
        gateway: ev.decision?.gateway.action,
        sds: ev.decision?.sds.action,
        ...(secret.tls?.fetchedStaple ? { stapleFrom: secret.tls.fetchedStaple.url } : {}),
      },
      stapleChanged ? 'secret re-evaluated: the served staple changed' : 'secret re-evaluated: stapling decision changed',
    );
    return true;
  }

  /** The supplier said the staples of these secrets changed. */
  #staplesChanged(names: readonly string[]): void {
    if (this.#closed) return;
    const now = this.#clock.now();
    const changed: string[] = [];
    for (const name of names) {
      const entry = this.#entries.get(name);
      if (entry && this.#refreshEntry(entry, now)) changed.push(name);
    }
    this.#scheduleReevaluation();
    this.#emit(changed);
  }

  /** Tells the supplier which certificates the secrets hold: versions in force and versions refused by policy. */
  #trackStaples(): void {
    if (!this.#staples) return;
    const targets: StapleTarget[] = [];
    const versions: string[] = [];
    for (const e of this.#entries.values()) {
      const seen = new Set<GatewaySecret>();
      for (const fs of [e.served?.fileSecret, e.rejected?.candidate?.fileSecret]) {
        if (!fs?.tls || seen.has(fs)) continue;
        seen.add(fs);
        versions.push(`${e.name}:${fs.digest}`);
        const leaf = fs.tls.chain[0]!;
        targets.push({ secret: e.name, leaf, issuer: fs.tls.issuer, policy: effectivePolicy(fs.declaredPolicy, leaf), userStaple: fs.tls.staple !== null });
      }
    }
    // The poll rescans twice a second; tell the supplier only when the versions it should know about changed.
    const signature = versions.sort().join('\n');
    if (signature === this.#trackedSignature) return;
    this.#trackedSignature = signature;
    try {
      this.#staples.track(targets);
    } catch (err) {
      this.#logger.error({ err: describeError(err) }, 'staple supplier failed to track the secrets');
    }
  }

  #scheduleReevaluation(): void {
    if (this.#reevaluateTimer) clearTimeout(this.#reevaluateTimer);
    this.#reevaluateTimer = null;
    if (this.#closed) return;
    let next: number | null = null;
    for (const e of this.#entries.values()) {
      const t = e.served?.evaluation.nextChangeAt?.getTime();
      if (t !== undefined && (next === null || t < next)) next = t;
    }
    if (next === null) return;
    const delay = Math.min(Math.max(0, next - this.#clock.now().getTime()), MAX_TIMEOUT_MS);
    this.#reevaluateTimer = setTimeout(() => this.reevaluate(), delay);
    this.#reevaluateTimer.unref();
  }
}
