import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/core/index.js';
import { SecretSource, StapleCache, StapleRefresher } from '../../src/secrets/index.js';
import { GatewaySecretProvider } from '../../src/sds/index.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { TestCA, tempDir, type IssuedLeaf } from '../helpers/test-ca.js';
import { manifestYaml, writeAtomic } from '../sds/secret-fixtures.js';
import { OpensslResponder, indexLine } from './openssl-responder.js';

const missing = spawnSync('openssl', ['version']).status === 0 ? null : 'openssl is not installed';
const skip = skipUnlessCi(missing);

const tmp = tempDir('meshcert-staple-openssl-');
let ca: TestCA;
let responder: OpensslResponder;
let index: string;
const leaves: Record<string, IssuedLeaf> = {};
const closers: Array<() => void> = [];

function writeIndex(revoked: Record<string, Date> = {}): void {
  const lines = Object.entries(leaves).map(([name, l]) => indexLine(l.cert, revoked[name] ? { at: revoked[name], reason: 'keyCompromise' } : undefined));
  writeAtomic(index, lines.join(''));
}

before(async () => {
  if (skip) return;
  const root = await TestCA.root({ name: 'openssl ocsp test root' });
  ca = await root.child({ name: 'openssl ocsp test issuing CA' });
  const caPem = tmp.file('ca.pem', ca.cert.pem);
  const caKey = tmp.file('ca.key', ca.keyPem);
  index = join(tmp.dir, 'index.txt');
  writeFileSync(index, '');
  // nextUpdate = thisUpdate + 1 minute: the schedule runs on a manual clock, checked against openssl's real one.
  responder = await OpensslResponder.create({ dir: tmp.dir, index, caPem, caKey, nmin: 1 });
  for (const name of ['pref', 'opt', 'rev']) {
    leaves[name] = await ca.issueServer([`${name}.example.com`], { ocspUrls: [responder.url] });
  }
  writeIndex();
  await responder.start();
});

after(async () => {
  for (const c of closers) c();
  await responder?.close();
  tmp.cleanup();
});

let n = 0;
function rig(specs: Array<{ name: string; policy: string }>) {
  const dir = join(tmp.dir, `case-${++n}`);
  mkdirSync(dir);
  writeAtomic(join(dir, 'secrets.yaml'), manifestYaml(...specs.map((s) => ({ name: s.name, policy: s.policy, data: { 'tls.crt': leaves[s.name]!.chainPem, 'tls.key': leaves[s.name]!.keyPem } }))));
  // The clock starts a second ahead of the real now (openssl stamps thisUpdate with its own clock, in whole
  // seconds: an answer must not look as if it came from our future), then moves by hand.
  const clock = new ManualClock(Date.now() + 1_000);
  const refresher = new StapleRefresher({ cache: new StapleCache(join(tmp.dir, `cache-${n}`)), clock, timers: false, random: () => 0.5, nonce: true, timeoutMs: 3_000 });
  const source = SecretSource.open({ paths: [dir], clock, watch: false, staples: refresher });
  closers.push(() => {
    source.close();
    refresher.close();
  });
  const served = (name: string) => {
    const s = source.get(name)?.served;
    assert.ok(s, `${name} is served`);
    return s;
  };
  return { clock, refresher, source, served };
}

describe('staples from a real `openssl ocsp` responder', { skip }, () => {
  test('fetched, served, refreshed before expiry; responder stopped: kept until nextUpdate, then the policy; back: fresh again', async (t) => {
    t.diagnostic(`responder ${responder.url}${responder.isolated ? ' (openssl in a private network namespace)' : ' (openssl bound directly)'}`);
    const { clock, refresher, source, served } = rig([
      { name: 'pref', policy: 'PREFERRED' },
      { name: 'opt', policy: 'OPTIONAL' },
    ]);
    await refresher.runDue();
    for (const name of ['pref', 'opt']) {
      const s = served(name);
      assert.equal(s.evaluation.staple?.state, 'valid', `${name}: ${s.evaluation.staple?.reasons.join('; ')}`);
      assert.equal(s.secret.tls?.fetchedStaple?.url, responder.url);
      assert.equal(s.evaluation.decision?.gateway.action, 'staple');
    }
    const first = served('pref').evaluation.staple!;
    assert.equal(first.nextUpdate!.getTime() - first.thisUpdate!.getTime(), 60_000, 'openssl -nmin 1');
    const sds = new GatewaySecretProvider(source);
    const sds1 = sds.resolve('kubernetes://pref');
    assert.equal(sds1.state, 'ready');

    // Refreshed at half of the validity, before it expires.
    clock.set(refresher.stateOf('pref')!.nextAttemptAt);
    assert.ok(clock.now().getTime() < first.nextUpdate!.getTime());
    const fetchedAt = refresher.stateOf('pref')!.lastAttempt!.at.getTime();
    await refresher.runDue();
    const second = served('pref');
    assert.ok(refresher.stateOf('pref')!.lastAttempt!.at.getTime() > fetchedAt, 'fetched again');
    assert.equal(refresher.stateOf('pref')!.lastAttempt!.result, 'good');
    assert.equal(second.evaluation.staple?.state, 'valid');
    t.diagnostic(`fetch latency against openssl ocsp: ${refresher.stateOf('pref')!.lastAttempt!.latencyMs.toFixed(1)} ms`);
    const sds2 = sds.resolve('kubernetes://pref');
    assert.ok(sds1.state === 'ready' && sds2.state === 'ready' && sds2.resource.digest !== sds1.resource.digest, 'a new version over SDS');

    // The responder stops: the staple stays until its nextUpdate.
    await responder.stop();
    clock.set(refresher.stateOf('pref')!.nextAttemptAt);
    await refresher.runDue();
    const down = refresher.stateOf('pref')!;
    assert.equal(down.lastAttempt!.result, 'unreachable', down.lastAttempt!.message ?? '');
    assert.equal(down.consecutiveFailures, 1);
    assert.ok(served('pref').secret.tls!.staple!.equals(second.secret.tls!.staple!));
    assert.equal(served('pref').evaluation.decision?.gateway.action, 'staple');

    // Past nextUpdate the policy applies: PREFERRED is not used, OPTIONAL goes without a staple.
    const lastNextUpdate = second.evaluation.staple!.nextUpdate!.getTime();
    clock.set(lastNextUpdate + 1_000);
    source.reevaluate();
    assert.equal(served('pref').evaluation.staple?.state, 'expired');
    assert.equal(served('pref').evaluation.decision?.gateway.action, 'fail-handshake');
    assert.equal(served('opt').evaluation.decision?.gateway.action, 'serve-without-staple');
    assert.equal(served('opt').evaluation.decision?.sds.action, 'send-without-staple');

    // The responder is back: its answers (on its real clock) must reach past our manual now, so let a
    // couple of real seconds pass since its last answer first.
    const wait = second.evaluation.staple!.thisUpdate!.getTime() + 3_000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await responder.start();
    clock.set(Math.max(clock.now().getTime(), refresher.stateOf('pref')!.nextAttemptAt.getTime()));
    await refresher.runDue();
    for (const name of ['pref', 'opt']) {
      const s = served(name);
      assert.equal(s.evaluation.staple?.state, 'valid', `${name}: ${s.evaluation.staple?.reasons.join('; ')}`);
      assert.equal(s.evaluation.decision?.gateway.action, 'staple');
    }
    assert.equal(refresher.stateOf('pref')!.consecutiveFailures, 0);
  });

  test('a `revoked` answer (index.txt line turned to R) withholds the certificate', async () => {
    const { refresher, served } = rig([{ name: 'rev', policy: 'PREFERRED' }]);
    await refresher.runDue();
    assert.equal(served('rev').evaluation.decision?.gateway.action, 'staple');
    writeIndex({ rev: new Date(Date.now() - 60_000) });
    // openssl ocsp checks index.txt before accepting each connection, so the answer to the first request after an
    // edit may still come from the old index: at most two fetches.
    let fetches = 0;
    while (served('rev').evaluation.staple?.status !== 'revoked' && fetches < 2) {
      await refresher.refreshNow();
      fetches++;
    }
    const ev = served('rev').evaluation;
    assert.equal(ev.staple?.status, 'revoked');
    assert.equal(ev.decision?.gateway.action, 'fail-handshake');
    assert.equal(ev.decision?.sds.action, 'withhold');
    assert.equal(refresher.stateOf('rev')!.lastAttempt!.result, 'revoked');
  });
});
