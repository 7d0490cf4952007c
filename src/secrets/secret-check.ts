import { ManualClock } from '../core/index.js';
import { gatewayServes, type EnvoyStaplePolicy, type GatewayAction, type OcspPolicy, type SdsAction, type StapleState } from './stapling-policy.js';
import { CACERT_SUFFIX, caResourceName, tlsResourceName, type CrlStatus } from './gateway-secret.js';
import type { SecretProblem } from './raw-secret.js';
import { SecretSource, type SecretEntry } from './secret-source.js';
import type { StapleCache } from './staple-cache.js';
import { ocspUrlsOf } from './staple-fetcher.js';
import { cachedStapleSupplier, type StapleSupplier } from './staple-supplier.js';

/** One SDS resource a secret feeds, and what Envoy gets for it. */
export interface CheckedResource {
  resource: string;
  kind: 'tlsCertificate' | 'validationContext';
  action: SdsAction | 'send';
  reason: string;
}

export interface CheckedSecret {
  name: string;
  source: string;
  /** Every secret is servable (exit 0) only when none is refused, withheld, or left unused by its policy. */
  servable: boolean;
  /** The verdict in words: "servable", or the reason it is not ("MANDATORY policy but no OCSP staple"). */
  verdict: string;
  type: string | null;
  policy: {
    declared: OcspPolicy | null;
    declaredBy: 'annotation' | 'configuration' | null;
    effective: OcspPolicy;
    envoy: EnvoyStaplePolicy;
    why: string;
  } | null;
  certificate: {
    subject: string;
    issuer: string;
    serial: string;
    notBefore: Date;
    notAfter: Date;
    dnsNames: string[];
    mustStaple: boolean;
    chainLength: number;
    issuerFound: boolean;
  } | null;
  staple: {
    key: string | null;
    state: StapleState;
    status: string | null;
    thisUpdate: Date | null;
    nextUpdate: Date | null;
    reasons: string[];
    /** Where the judged staple comes from: the secret's own key, or fetched by `meshcert serve` (from the cache). */
    origin: 'secret' | 'fetched';
    fetchedFrom: string | null;
  } | null;
  /** Staple fetching as `meshcert serve` left it in the data dir's cache; null without a cache or an OCSP URL. */
  fetch: {
    url: string;
    /** never: the cache holds nothing for this certificate (not fetched with this data dir yet). */
    state: 'never' | 'fetched';
    lastAttempt: { at: Date; result: string; message: string | null } | null;
    lastSuccessAt: Date | null;
    consecutiveFailures: number;
    nextAttemptAt: Date | null;
    cached: { status: string; thisUpdate: Date; nextUpdate: Date | null; fetchedAt: Date } | null;
  } | null;
  ca: { key: string; certificates: string[]; crlKey: string | null; crls: CrlStatus[] } | null;
  /** What meshcert's own gateway does with it. */
  gateway: { action: GatewayAction; reason: string } | null;
  /** What goes over SDS to Envoy. */
  sds: CheckedResource[];
  problems: SecretProblem[];
}

export interface SecretCheckReport {
  at: Date;
  ok: boolean;
  secrets: CheckedSecret[];
  /** Problems of paths and files that belong to no one secret (unreadable paths, YAML errors, duplicates). */
  files: Array<{ path: string; problems: SecretProblem[]; ignored: string[] }>;
}

export interface CheckOptions {
  /** Judge at this instant (default now). */
  at?: Date;
  policies?: Readonly<Record<string, OcspPolicy>>;
  /** Judge with the staples `meshcert serve` fetched into this cache (DATA-DIR/ocsp-staples), and report fetch state. */
  stapleCache?: StapleCache;
}

/** A problem's message without the "secret NAME (SOURCE): " prefix, which the report line already shows. */
function words(message: string, name: string, source: string): string {
  const prefix = `secret ${name} (${source}): `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

function fetchState(version: { secret: CheckedVersionSecret }, supplier: StapleSupplier | null): CheckedSecret['fetch'] {
  const tls = version.secret.tls;
  if (!supplier?.record || !tls?.issuer) return null;
  const leaf = tls.chain[0]!;
  const urls = ocspUrlsOf(leaf);
  if (urls.length === 0) return null;
  const r = supplier.record(leaf, tls.issuer);
  if (!r) return { url: urls[0]!, state: 'never', lastAttempt: null, lastSuccessAt: null, consecutiveFailures: 0, nextAttemptAt: null, cached: null };
  return {
    url: r.lastAttempt?.url || urls[0]!,
    state: 'fetched',
    lastAttempt: r.lastAttempt ? { at: r.lastAttempt.at, result: r.lastAttempt.result, message: r.lastAttempt.message } : null,
    lastSuccessAt: r.lastSuccessAt,
    consecutiveFailures: r.consecutiveFailures,
    nextAttemptAt: r.nextAttemptAt,
    cached: r.staple ? { status: r.staple.status, thisUpdate: r.staple.thisUpdate, nextUpdate: r.staple.nextUpdate, fetchedAt: r.staple.fetchedAt } : null,
  };
}

type CheckedVersionSecret = NonNullable<SecretEntry['served']>['secret'];

function checked(entry: SecretEntry, known: Set<string>, supplier: StapleSupplier | null = null): CheckedSecret {
  const problems: SecretProblem[] = [...(entry.rejected?.problems ?? [])];
  // The version to describe: the one in force, else a refused one that at least parsed.
  const version = entry.served ?? entry.rejected?.candidate ?? null;
  if (!version) {
    const first = problems.find((p) => p.severity === 'error');
    return {
      name: entry.name,
      source: entry.rejected?.source ?? '',
      servable: false,
      verdict: first ? words(first.message, entry.name, entry.rejected?.source ?? '') : 'invalid',
      type: null,
      policy: null,
      certificate: null,
      staple: null,
      ca: null,
      fetch: null,
      gateway: null,
      sds: [],
      problems,
    };
  }
  const { secret, evaluation: ev } = version;
  if (entry.served) problems.push(...secret.warnings, ...ev.warnings.filter((w) => w.code !== 'staple'));
  const leaf = secret.tls?.chain[0] ?? null;
  const sds: CheckedResource[] = [];
  if (secret.tls && ev.decision) {
    sds.push({ resource: tlsResourceName(secret.name), kind: 'tlsCertificate', action: ev.decision.sds.action, reason: ev.decision.sds.reason });
  }
  if (secret.ca) {
    const separate = !secret.name.endsWith(CACERT_SUFFIX) && known.has(`${secret.name}${CACERT_SUFFIX}`);
    if (!separate) {
      const crl = secret.ca.crls.length ? ` and ${secret.ca.crls.length} CRL${secret.ca.crls.length > 1 ? 's' : ''}` : '';
      sds.push({
        resource: caResourceName(secret.name),
        kind: 'validationContext',
        action: entry.served ? 'send' : 'withhold',
        reason: entry.served ? `${secret.ca.certs.length} CA certificate${secret.ca.certs.length > 1 ? 's' : ''}${crl}` : 'the secret has no valid version',
      });
    }
  }
  let verdict = 'servable';
  let servable = true;
  if (!entry.served) {
    servable = false;
    verdict = ev.decision?.gateway.reason ?? 'invalid';
  } else if (entry.rejected) {
    servable = false;
    const first = entry.rejected.problems.find((p) => p.severity === 'error');
    verdict = `the newest version is refused (${first ? words(first.message, entry.name, entry.rejected.source) : 'invalid'}); the last good one stays`;
  } else if (ev.decision && !gatewayServes(ev.decision.gateway.action)) {
    servable = false;
    verdict = ev.decision.gateway.reason;
  } else if (ev.decision?.sds.action === 'withhold') {
    servable = false;
    verdict = ev.decision.sds.reason;
  }
  return {
    name: secret.name,
    source: secret.source,
    servable,
    verdict,
    type: secret.type,
    policy: ev.policy
      ? { declared: secret.declaredPolicy, declaredBy: secret.policySource, effective: ev.policy.policy, envoy: ev.policy.envoy, why: ev.policy.why }
      : null,
    certificate: leaf
      ? {
          subject: leaf.subject,
          issuer: leaf.issuer,
          serial: leaf.serial,
          notBefore: leaf.notBefore,
          notAfter: leaf.notAfter,
          dnsNames: leaf.sans.dns,
          mustStaple: leaf.mustStaple,
          chainLength: secret.tls!.chain.length,
          issuerFound: secret.tls!.issuer !== null,
        }
      : null,
    staple: ev.staple
      ? {
          key: secret.tls?.stapleKey ?? null,
          state: ev.staple.state,
          status: ev.staple.status ?? null,
          thisUpdate: ev.staple.thisUpdate ?? null,
          nextUpdate: ev.staple.nextUpdate ?? null,
          reasons: ev.staple.reasons,
          origin: secret.tls?.fetchedStaple ? ('fetched' as const) : ('secret' as const),
          fetchedFrom: secret.tls?.fetchedStaple?.url ?? null,
        }
      : null,
    fetch: fetchState(version, supplier),
    ca: secret.ca ? { key: secret.ca.caKey, certificates: secret.ca.certs.map((c) => c.subject), crlKey: secret.ca.crlKey, crls: ev.crls } : null,
    gateway: ev.decision?.gateway ?? null,
    sds,
    problems,
  };
}

/**
 * The report behind `meshcert secret check`: reads the paths as `meshcert serve` would (manifests, mounted
 * folders), and for each secret says what will be served to meshcert's gateway and to Envoy, the policy, the
 * staple's state and why, the CRLs, and every problem. `ok` is false when any secret would be refused, withheld,
 * or left unused by its policy, or a file could not be read.
 */
export function checkSecrets(paths: readonly string[], options: CheckOptions = {}): SecretCheckReport {
  const at = options.at ?? new Date();
  const supplier = options.stapleCache ? cachedStapleSupplier(options.stapleCache) : null;
  const source = SecretSource.open({
    paths,
    clock: new ManualClock(at),
    watch: false,
    ...(options.policies ? { policies: options.policies } : {}),
    ...(supplier ? { staples: supplier } : {}),
  });
  try {
    const entries = source.entries();
    const known = new Set(entries.map((e) => e.name));
    const secrets = entries.map((e) => checked(e, known, supplier));
    const files = source.origins().map((o) => ({ path: o.path, problems: o.problems, ignored: o.ignored }));
    const fileErrors = files.some((f) => f.problems.some((p) => p.severity === 'error'));
    return { at, ok: secrets.length > 0 && secrets.every((s) => s.servable) && !fileErrors, secrets, files };
  } finally {
    source.close();
  }
}

function iso(d: Date | null | undefined): string {
  return d ? d.toISOString().replace('.000Z', 'Z') : 'none';
}

const GATEWAY_WORDS: Record<GatewayAction, string> = {
  staple: 'serves the certificate and staples the OCSP response',
  'serve-without-staple': 'serves the certificate without a staple',
  'fail-handshake': 'does not use the certificate: handshakes fail',
  reject: 'refuses the configuration',
};

const SDS_WORDS: Record<CheckedResource['action'], string> = {
  'send-with-staple': 'sent with the staple',
  'send-without-staple': 'sent without a staple',
  withhold: 'WITHHELD',
  send: 'sent',
};

/** The report as text for people: one block per secret, the verdict first. */
export function formatSecretCheck(report: SecretCheckReport): string {
  const lines: string[] = [];
  for (const f of report.files) {
    for (const p of f.problems) lines.push(`${p.severity === 'error' ? 'error' : 'warning'}: ${p.message}`);
  }
  if (report.files.some((f) => f.problems.length)) lines.push('');
  if (report.secrets.length === 0) lines.push('no secrets found');
  for (const s of report.secrets) {
    lines.push(`${s.name} (${s.source}): ${s.servable ? 'servable' : `NOT servable: ${s.verdict}`}`);
    if (s.policy) lines.push(`  policy: ${s.policy.why}; Envoy ${s.policy.envoy}`);
    if (s.certificate) {
      const c = s.certificate;
      const names = c.dnsNames.length ? `, DNS ${c.dnsNames.join(', ')}` : '';
      lines.push(`  certificate: "${c.subject}"${names}, serial ${c.serial}, valid ${iso(c.notBefore)} to ${iso(c.notAfter)}${c.mustStaple ? ', must-staple' : ''}`);
      lines.push(`  chain: ${c.chainLength} certificate${c.chainLength > 1 ? 's' : ''}${c.issuerFound ? '' : '; the issuer is not in it (nor in ca.crt)'}`);
    }
    if (s.staple) {
      const st = s.staple;
      if (st.state === 'none') lines.push('  staple: none');
      else {
        const times = `this update ${iso(st.thisUpdate)}, next update ${iso(st.nextUpdate)}`;
        const from = st.origin === 'fetched' ? `fetched from ${st.fetchedFrom}` : st.key;
        lines.push(`  staple (${from}): ${st.state}${st.status ? `, status ${st.status}` : ''}${st.thisUpdate ? `, ${times}` : ''}`);
        for (const r of st.reasons) lines.push(`    - ${r}`);
      }
    }
    if (s.fetch) {
      const f = s.fetch;
      if (f.state === 'never') lines.push(`  staple fetching (${f.url}): never fetched with this data dir`);
      else {
        const last = f.lastAttempt ? `last fetch ${iso(f.lastAttempt.at)}: ${f.lastAttempt.result}${f.lastAttempt.message ? ` (${f.lastAttempt.message})` : ''}` : 'no fetch yet';
        const fails = f.consecutiveFailures ? `; ${f.consecutiveFailures} failure${f.consecutiveFailures > 1 ? 's' : ''} in a row, last success ${iso(f.lastSuccessAt)}` : '';
        const next = f.nextAttemptAt ? `; next ${f.consecutiveFailures ? 'retry' : 'refresh'} ${iso(f.nextAttemptAt)}` : '';
        lines.push(`  staple fetching (${f.url}): ${last}${fails}${next}`);
        if (f.cached) lines.push(`    cached staple: ${f.cached.status}, fetched ${iso(f.cached.fetchedAt)}, next update ${iso(f.cached.nextUpdate)}`);
      }
    }
    if (s.ca) {
      lines.push(`  CA (${s.ca.key}): ${s.ca.certificates.map((c) => `"${c}"`).join(', ')}`);
      for (const crl of s.ca.crls) {
        lines.push(
          `  CRL (${s.ca.crlKey}): issuer "${crl.issuer}", ${crl.entries} revoked, this update ${iso(crl.thisUpdate)}, next update ${iso(crl.nextUpdate)}, ${crl.current ? 'current' : 'NOT current'}${crl.signedBy ? '' : ', signer not in the CA certificates'}`,
        );
      }
    }
    if (s.gateway) lines.push(`  meshcert gateway: ${GATEWAY_WORDS[s.gateway.action]} (${s.gateway.reason})`);
    for (const r of s.sds) lines.push(`  Envoy (SDS): ${r.resource} ${SDS_WORDS[r.action]} (${r.reason})`);
    for (const p of s.problems) lines.push(`  ${p.severity}: ${p.message}`);
  }
  lines.push('');
  const bad = report.secrets.filter((s) => !s.servable).length;
  lines.push(
    report.ok
      ? `${report.secrets.length} secret${report.secrets.length === 1 ? '' : 's'}, all servable`
      : `${bad} of ${report.secrets.length} secret${report.secrets.length === 1 ? '' : 's'} not servable${report.files.some((f) => f.problems.some((p) => p.severity === 'error')) ? '; some files could not be used' : ''}`,
  );
  return lines.join('\n');
}
