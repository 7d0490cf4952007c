import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/core/index.js';
import {
  SecretSource,
  StapleCache,
  StapleMetrics,
  StapleRefresher,
  checkSecrets,
  formatSecretCheck,
  registerSecretMetrics,
  type SecretChange,
  type StapleRefresherOptions,
} from '../../src/secrets/index.js';
import { GatewaySecretProvider } from '../../src/sds/index.js';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { manifestYaml, makeStaple, writeAtomic, type SecretData } from '../sds/secret-fixtures.js';
import { FakeResponder } from './fake-responder.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const tmp = tempDir('meshcert-staples-');
const clock = new ManualClock(new Date(Math.floor(Date.now() / 1000) * 1000));
let ca: TestCA;
let responder: FakeResponder;
const cleanups: Array<() => void> = [];

before(async () => {
  const root = await TestCA.root({ name: 'staple test root' });
  ca = await root.child({ name: 'staple test issuing CA' });
  responder = await FakeResponder.start(ca, clock);
});
after(async () => {
  for (const c of cleanups) c();
  await responder.close();
  tmp.cleanup();
});

let n = 0;
async function leaf(name: string, spec: { mustStaple?: boolean } = {}): Promise<IssuedLeaf> {
  return ca.issueServer([`${name}.example.com`], { ocspUrls: [responder.url], ...spec });
}

function data(l: IssuedLeaf, extra: SecretData = {}): SecretData {
  return { 'tls.crt': l.chainPem, 'tls.key': l.keyPem, ...extra };
}

interface Rig {
  dir: string;
  source: SecretSource;
  refresher: StapleRefresher;
  changes: SecretChange[];
  logs: Array<{ level: number; msg: string; [k: string]: unknown }>;
  registry: Registry;
  cacheDir: string;
}

/** A folder of manifests, a SecretSource over it, and a refresher driven by the manual clock (timers off). */
function rig(manifests: string, options: Partial<StapleRefresherOptions> & { cacheDir?: string } = {}): Rig {
  const dir = join(tmp.dir, `case-${++n}`);
  mkdirSync(dir);
  writeAtomic(join(dir, 'secrets.yaml'), manifests);
  const cacheDir = options.cacheDir ?? join(tmp.dir, `cache-${n}`);
  const logs: Rig['logs'] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s)) });
  const registry = new Registry();
  let refresher: StapleRefresher | null = null;
  const metrics = new StapleMetrics(registry, () => refresher!.states(), () => clock.now());
  refresher = new StapleRefresher({ cache: new StapleCache(cacheDir), clock, logger, timers: false, random: () => 0.5, observer: metrics, ...options });
  const source = SecretSource.open({ paths: [dir], clock, logger, watch: false, staples: refresher });
  registerSecretMetrics(registry, source, () => clock.now());
  const changes: SecretChange[] = [];
  source.onChange((c) => changes.push(c));
  cleanups.push(() => {
    source.close();
    refresher!.close();
  });
  return { dir, source, refresher, changes, logs, registry, cacheDir };
}

function served(r: Rig, name: string) {
  const s = r.source.get(name)?.served;
  assert.ok(s, `secret ${name} is served`);
  return s;
}

describe('staples fetched and refreshed by meshcert', () => {
  test('a staple is fetched, served as a new version (over SDS too), and refreshed at half its validity', async () => {
    const l = await leaf(`fresh${n}`);
    responder.mode = { kind: 'answer', validityMs: 2 * HOUR };
    const r = rig(manifestYaml({ name: 'gw', policy: 'PREFERRED', data: data(l) }));
    const provider = new GatewaySecretProvider(r.source);
    assert.equal(served(r, 'gw').evaluation.staple?.state, 'none');
    const firstSds = provider.resolve('kubernetes://gw');
    assert.equal(firstSds.state, 'ready');

    const before = responder.requests.length;
    await r.refresher.runDue();
    assert.equal(responder.requests.length, before + 1);
    const v1 = served(r, 'gw');
    assert.equal(v1.evaluation.staple?.state, 'valid');
    assert.equal(v1.secret.tls?.fetchedStaple?.url, responder.url);
    assert.equal(v1.evaluation.decision?.sds.action, 'send-with-staple');
    assert.notEqual(v1.secret.digest, v1.fileSecret.digest);
    assert.deepEqual(r.changes.at(-1)?.names, ['gw']);
    const sds1 = provider.resolve('kubernetes://gw');
    assert.ok(sds1.state === 'ready' && firstSds.state === 'ready' && sds1.resource.digest !== firstSds.resource.digest, 'SDS sees a new version');

    // Not before half of the validity (jitter pinned to the middle)...
    clock.advance(HOUR - 1_000);
    await r.refresher.runDue();
    assert.equal(responder.requests.length, before + 1);
    // ... and at it.
    clock.advance(2_000);
    await r.refresher.runDue();
    assert.equal(responder.requests.length, before + 2);
    const v2 = served(r, 'gw');
    assert.ok(v2.evaluation.staple!.thisUpdate!.getTime() > v1.evaluation.staple!.thisUpdate!.getTime());
    assert.notEqual(v2.secret.digest, v1.secret.digest);
    assert.equal(r.changes.length, 2);
    const state = r.refresher.stateOf('gw')!;
    assert.equal(state.lastAttempt?.result, 'good');
    assert.equal(state.nextAttemptAt.getTime(), v2.evaluation.staple!.thisUpdate!.getTime() + HOUR);
    const text = await r.registry.metrics();
    assert.match(text, /meshcert_staple_fetches_total\{secret="gw",result="good"\} 2/);
    assert.match(text, /meshcert_staple_age_seconds\{secret="gw"\} \d/);
    assert.match(text, /meshcert_secret_staple_age_seconds\{secret="gw",origin="fetched"\} \d/);
  });

  test('responder failures keep the staple until nextUpdate, with backoff; then the policy applies; the responder back serves a fresh one', async () => {
    const lp = await leaf(`pref${n}`);
    const lo = await leaf(`opt${n}`);
    responder.mode = { kind: 'answer', validityMs: HOUR };
    const r = rig(manifestYaml({ name: 'pref', policy: 'PREFERRED', data: data(lp) }, { name: 'opt', policy: 'OPTIONAL', data: data(lo) }));
    await r.refresher.runDue();
    const first = served(r, 'pref').secret.tls!.staple!;
    const nextUpdate = served(r, 'pref').evaluation.staple!.nextUpdate!.getTime();

    const failures: Array<[FakeResponder['mode'], string]> = [
      [{ kind: 'http', status: 503 }, 'http-status'],
      [{ kind: 'garbage' }, 'garbage'],
      [{ kind: 'answer', signer: await TestCA.root({ name: 'impostor' }) }, 'wrong-signer'],
      [{ kind: 'http', status: 500 }, 'http-status'],
    ];
    clock.advance(HOUR / 2);
    let lastDelay = 0;
    for (const [mode, reason] of failures) {
      responder.mode = mode;
      await r.refresher.runDue();
      const st = r.refresher.stateOf('pref')!;
      assert.equal(st.lastAttempt?.result, reason);
      const delay = st.nextAttemptAt.getTime() - clock.now().getTime();
      assert.ok(delay > lastDelay, `backoff grows: ${delay} after ${lastDelay}`);
      lastDelay = delay;
      assert.ok(served(r, 'pref').secret.tls!.staple!.equals(first), 'the current staple stays');
      assert.equal(served(r, 'pref').evaluation.decision?.gateway.action, 'staple');
      clock.advance(delay);
    }
    assert.equal(r.refresher.stateOf('pref')!.consecutiveFailures, 4);
    assert.ok(r.logs.some((l) => l.level === 40 && /fetch failed \(http-status\).*stays until its nextUpdate/.test(l.msg)));
    assert.match(await r.registry.metrics(), /meshcert_staple_fetch_failures_total\{secret="pref",reason="http-status"\} 2/);

    // Past nextUpdate: the policy applies.
    responder.mode = { kind: 'http', status: 503 };
    clock.set(nextUpdate + 1_000);
    r.source.reevaluate();
    const pref = served(r, 'pref').evaluation;
    assert.equal(pref.staple?.state, 'expired');
    assert.equal(pref.decision?.gateway.action, 'fail-handshake', 'PREFERRED: the certificate is not used');
    const opt = served(r, 'opt').evaluation;
    assert.equal(opt.decision?.gateway.action, 'serve-without-staple', 'OPTIONAL: served without a staple');
    assert.equal(opt.decision?.sds.action, 'send-without-staple');

    // The responder is back: a fresh staple at the next retry.
    responder.mode = { kind: 'answer', validityMs: HOUR };
    clock.advance(r.refresher.stateOf('pref')!.nextAttemptAt.getTime() - clock.now().getTime());
    await r.refresher.runDue();
    assert.equal(served(r, 'pref').evaluation.decision?.gateway.action, 'staple');
    assert.equal(served(r, 'opt').evaluation.decision?.gateway.action, 'staple');
    assert.equal(r.refresher.stateOf('pref')!.consecutiveFailures, 0);
  });

  test('a revoked answer is used at once: PREFERRED and MANDATORY withhold the certificate, loudly', async () => {
    const lp = await leaf(`revp${n}`);
    const lm = await leaf(`revm${n}`);
    responder.mode = { kind: 'answer', validityMs: HOUR };
    const r = rig(manifestYaml({ name: 'pref', policy: 'PREFERRED', data: data(lp) }, { name: 'mand', policy: 'MANDATORY', data: data(lm) }));
    await r.refresher.runDue();
    assert.equal(served(r, 'mand').evaluation.decision?.gateway.action, 'staple');

    responder.mode = { kind: 'answer', validityMs: HOUR, status: { revoked: { at: new Date(clock.now().getTime() - MIN), reason: 'keyCompromise' } } };
    await r.refresher.refreshNow();
    for (const name of ['pref', 'mand']) {
      const ev = served(r, name).evaluation;
      assert.equal(ev.staple?.status, 'revoked');
      assert.equal(ev.decision?.gateway.action, 'fail-handshake', name);
      assert.equal(ev.decision?.sds.action, 'withhold', name);
    }
    const provider = new GatewaySecretProvider(r.source);
    assert.equal(provider.resolve('kubernetes://pref').state, 'withheld');
    const loud = r.logs.filter((l) => l.level === 50 && /REVOKED/.test(l.msg));
    assert.equal(loud.length, 2, 'one error line per certificate');
    assert.equal(loud[0]!.revocationReason, 'keyCompromise');
    const text = await r.registry.metrics();
    assert.match(text, /meshcert_staple_revoked\{secret="pref"\} 1/);
    assert.match(text, /meshcert_staple_fetches_total\{secret="mand",result="revoked"\} 1/);
    assert.match(text, /meshcert_secret_sds_withheld\{secret="mand"\} 1/);
  });

  test('MANDATORY without a staple of its own: refused until a staple is fetched, then served', async () => {
    const l = await leaf(`mand${n}`, { mustStaple: true });
    responder.mode = { kind: 'answer' };
    const r = rig(manifestYaml({ name: 'ms', data: data(l) }));
    const e0 = r.source.get('ms')!;
    assert.equal(e0.served, null);
    assert.match(e0.rejected!.problems[0]!.message, /MANDATORY policy but no OCSP staple/);
    await r.refresher.runDue();
    const e1 = r.source.get('ms')!;
    assert.equal(e1.rejected, null);
    assert.equal(e1.served?.evaluation.decision?.gateway.action, 'staple');
    assert.deepEqual(r.changes.at(-1)?.names, ['ms']);
  });

  test("a user-provided tls.ocsp is served until a fresher valid staple is fetched", async () => {
    const l = await leaf(`user${n}`);
    const now = clock.now().getTime();
    const own = await makeStaple(ca, l.cert, { thisUpdate: new Date(now - 10 * MIN), nextUpdate: new Date(now + HOUR) });
    responder.mode = { kind: 'http', status: 503 };
    const r = rig(manifestYaml({ name: 'own', policy: 'PREFERRED', data: data(l, { 'tls.ocsp-staple': own }) }));
    assert.ok(served(r, 'own').secret.tls!.staple!.equals(own));
    await r.refresher.runDue();
    assert.ok(served(r, 'own').secret.tls!.staple!.equals(own), 'kept while the responder fails');
    assert.equal(served(r, 'own').secret.tls!.fetchedStaple, undefined);
    responder.mode = { kind: 'answer' };
    clock.advance(r.refresher.stateOf('own')!.nextAttemptAt.getTime() - clock.now().getTime());
    await r.refresher.runDue();
    assert.equal(served(r, 'own').secret.tls!.fetchedStaple?.url, responder.url);
    assert.equal(served(r, 'own').evaluation.staple?.state, 'valid');
  });

  test('a restart serves the cached staple at once and does not ask the responder before it is due', async () => {
    const l = await leaf(`cache${n}`);
    responder.mode = { kind: 'answer', validityMs: HOUR };
    const manifests = manifestYaml({ name: 'gw', policy: 'PREFERRED', data: data(l) });
    const first = rig(manifests);
    await first.refresher.runDue();
    const fetched = served(first, 'gw').secret.tls!.staple!;
    first.source.close();
    first.refresher.close();

    const requests = responder.requests.length;
    const again = rig(manifests, { cacheDir: first.cacheDir });
    assert.ok(served(again, 'gw').secret.tls!.staple!.equals(fetched), 'the cached staple is served from the first scan');
    assert.equal(served(again, 'gw').evaluation.decision?.gateway.action, 'staple');
    await again.refresher.runDue();
    assert.equal(responder.requests.length, requests, 'no request before the refresh is due');
    clock.advance(HOUR / 2 + 1_000);
    await again.refresher.runDue();
    assert.equal(responder.requests.length, requests + 1);

    // `meshcert secret check` reads the same cache, offline.
    const report = checkSecrets([again.dir], { at: clock.now(), stapleCache: new StapleCache(first.cacheDir) });
    const s = report.secrets.find((x) => x.name === 'gw')!;
    assert.equal(s.staple?.origin, 'fetched');
    assert.equal(s.fetch?.state, 'fetched');
    assert.equal(s.fetch?.lastAttempt?.result, 'good');
    const text = formatSecretCheck(report);
    assert.match(text, new RegExp(`staple \\(fetched from ${responder.url.replace(/[.:/]/g, '\\$&')}\\): valid`));
    assert.match(text, /staple fetching \(http:\/\/127\.0\.0\.1:\d+\/ocsp\): last fetch \S+: good; next refresh \S+/);
  });

  test('an attempt that throws (a bug, not the responder) backs off instead of spinning, and keeps the staple', async () => {
    const l = await leaf(`boom${n}`);
    responder.mode = { kind: 'answer' };
    let calls = 0;
    let explode = false;
    const { fetchStaple } = await import('../../src/secrets/index.js');
    const r = rig(manifestYaml({ name: 'gw', policy: 'PREFERRED', data: data(l) }), {
      fetch: async (o) => {
        calls++;
        if (explode) throw new Error('boom');
        return fetchStaple(o);
      },
    });
    await r.refresher.runDue();
    const staple = served(r, 'gw').secret.tls!.staple!;
    explode = true;
    await r.refresher.refreshNow();
    await r.refresher.runDue();
    assert.equal(calls, 2, 'not retried at once');
    const st = r.refresher.stateOf('gw')!;
    assert.equal(st.consecutiveFailures, 1);
    assert.ok(st.nextAttemptAt.getTime() > clock.now().getTime());
    assert.ok(served(r, 'gw').secret.tls!.staple!.equals(staple));
    assert.ok(r.logs.some((x) => x.level === 50 && /failed unexpectedly/.test(x.msg)));
  });

  test('a certificate without an OCSP URL is not fetched, and a MANDATORY one says so once', async () => {
    const l = await ca.issueServer([`nourl${n}.example.com`]);
    const r = rig(manifestYaml({ name: 'plain', policy: 'MANDATORY', data: data(l) }));
    r.source.reload();
    assert.equal(r.refresher.states().length, 0);
    const warned = r.logs.filter((x) => /names no http\(s\) OCSP responder/.test(x.msg));
    assert.equal(warned.length, 1);
    assert.equal(warned[0]!.level, 40);
  });
});
