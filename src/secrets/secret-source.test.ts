import assert from 'node:assert/strict';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../core/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import {
  HOUR,
  gatewayPki,
  makeStaple,
  manifestYaml,
  tlsData,
  waitUntil,
  writeAtomic,
  writeMountedSecret,
  type GatewayPki,
} from '../../test/sds/secret-fixtures.js';
import { SecretSource, type SecretChange, type SecretSourceOptions } from './index.js';

let pki: GatewayPki;
let other: GatewayPki;
const tmp = tempDir('meshcert-source-');
const opened: SecretSource[] = [];

before(async () => {
  pki = await gatewayPki();
  other = await gatewayPki({ dnsName: 'other.example.com' });
});
after(() => {
  for (const s of opened) s.close();
  tmp.cleanup();
});

let n = 0;
function folder(): string {
  const dir = join(tmp.dir, `case-${++n}`);
  mkdirSync(dir);
  return dir;
}

function open(paths: string[], options: Partial<SecretSourceOptions> = {}): { source: SecretSource; changes: SecretChange[] } {
  // A long poll, so that these tests show the fs.watch path meets the one-second promise on its own.
  const source = SecretSource.open({ paths, pollIntervalMs: 5000, ...options });
  opened.push(source);
  const changes: SecretChange[] = [];
  source.onChange((c) => changes.push(c));
  return { source, changes };
}

function servedSerial(source: SecretSource, name: string): string | undefined {
  return source.get(name)?.served?.secret.tls?.chain[0]!.serial;
}

describe('watching a folder', () => {
  test('a manifest change reaches subscribers within a second', async () => {
    const dir = folder();
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', data: tlsData(pki) }));
    const { source, changes } = open([dir]);
    assert.equal(servedSerial(source, 'gw'), pki.leaf.cert.serial);
    const t0 = Date.now();
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', data: tlsData(other) }));
    await waitUntil(() => servedSerial(source, 'gw') === other.leaf.cert.serial, 1000, 'the new certificate');
    assert.ok(Date.now() - t0 < 1000);
    assert.deepEqual(changes.at(-1), { names: ['gw'] });
  });

  test('the mounted layout: a ..data swap reaches subscribers within a second', async () => {
    const dir = folder();
    writeMountedSecret(join(dir, 'gw'), tlsData(pki));
    const { source, changes } = open([dir]);
    assert.equal(servedSerial(source, 'gw'), pki.leaf.cert.serial);
    assert.equal(source.get('gw')!.served!.secret.layout, 'mounted');
    const t0 = Date.now();
    writeMountedSecret(join(dir, 'gw'), tlsData(other));
    await waitUntil(() => servedSerial(source, 'gw') === other.leaf.cert.serial, 1000, 'the swapped certificate');
    assert.ok(Date.now() - t0 < 1000);
    assert.deepEqual(changes.at(-1), { names: ['gw'] });
  });

  test('a mounted secret folder given directly, and a new secret folder appearing later', async () => {
    const dir = folder();
    writeMountedSecret(join(dir, 'a'), tlsData(pki));
    const { source } = open([dir]);
    writeMountedSecret(join(dir, 'b'), tlsData(other));
    await waitUntil(() => servedSerial(source, 'b') === other.leaf.cert.serial, 1000, 'secret b');
    const direct = open([join(dir, 'a')]).source;
    assert.deepEqual(
      direct.entries().map((e) => e.name),
      ['a'],
    );
  });

  test('a manifest file given directly: replaced by rename, seen through its folder within a second', async () => {
    const dir = folder();
    const file = join(dir, 'gw.yaml');
    writeAtomic(file, manifestYaml({ name: 'gw', data: tlsData(pki) }));
    writeAtomic(join(dir, 'other.yaml'), manifestYaml({ name: 'not-mine', data: tlsData(pki) }));
    const { source } = open([file]);
    assert.deepEqual(
      source.entries().map((e) => e.name),
      ['gw'],
    );
    writeAtomic(file, manifestYaml({ name: 'gw', data: tlsData(other) }));
    await waitUntil(() => servedSerial(source, 'gw') === other.leaf.cert.serial, 1000, 'the replaced file');
  });

  test('the poll catches what fs.watch would miss', async () => {
    const dir = folder();
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', data: tlsData(pki) }));
    const { source } = open([dir], { watch: true, pollIntervalMs: 100, debounceMs: 5000 });
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', data: tlsData(other) }));
    await waitUntil(() => servedSerial(source, 'gw') === other.leaf.cert.serial, 1000, 'the poll');
  });
});

describe('keeping the last good version', () => {
  test('an invalid new version keeps the last good one served and is reported; the other secrets carry on', async () => {
    const dir = folder();
    writeAtomic(join(dir, 'a.yaml'), manifestYaml({ name: 'a', data: tlsData(pki) }));
    writeAtomic(join(dir, 'b.yaml'), manifestYaml({ name: 'b', data: tlsData(pki) }));
    const { source } = open([dir]);
    // a: the key of another certificate.
    writeAtomic(join(dir, 'a.yaml'), manifestYaml({ name: 'a', data: { 'tls.crt': pki.leaf.chainPem, 'tls.key': other.leaf.keyPem } }));
    // b: changes to a good new version at the same time.
    writeAtomic(join(dir, 'b.yaml'), manifestYaml({ name: 'b', data: tlsData(other) }));
    await waitUntil(() => source.get('a')?.rejected !== null && servedSerial(source, 'b') === other.leaf.cert.serial, 1000, 'both changes');
    const a = source.get('a')!;
    assert.equal(a.served?.secret.tls?.chain[0]!.serial, pki.leaf.cert.serial, 'the last good version of a stays');
    assert.equal(a.rejected!.problems[0]!.code, 'keyMismatch');
    assert.match(a.rejected!.problems[0]!.message, /tls.key does not belong to the certificate in tls.crt/);
    // Fixed: served again, the report cleared.
    writeAtomic(join(dir, 'a.yaml'), manifestYaml({ name: 'a', data: tlsData(other) }));
    await waitUntil(() => servedSerial(source, 'a') === other.leaf.cert.serial, 1000, 'the fix');
    assert.equal(source.get('a')!.rejected, null);
  });

  test('MANDATORY without a staple is refused: the last good version (with its staple) stays', async () => {
    const dir = folder();
    const staple = await makeStaple(pki.ca, pki.leaf.cert);
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', policy: 'MANDATORY', data: tlsData(pki, { 'tls.ocsp-staple': staple }) }));
    const { source } = open([dir]);
    assert.equal(source.get('gw')!.served!.evaluation.decision!.sds.action, 'send-with-staple');
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', policy: 'MANDATORY', data: tlsData(other) }));
    await waitUntil(() => source.get('gw')!.rejected !== null, 1000, 'the refusal');
    assert.equal(servedSerial(source, 'gw'), pki.leaf.cert.serial);
    assert.match(source.get('gw')!.rejected!.problems[0]!.message, /MANDATORY policy but no OCSP staple/);
  });

  test('a file that stops being YAML keeps the last good versions of the secrets it held', async () => {
    const dir = folder();
    writeAtomic(join(dir, 'both.yaml'), manifestYaml({ name: 'a', data: tlsData(pki) }, { name: 'b', data: tlsData(other) }));
    const { source, changes } = open([dir]);
    const before = changes.length;
    writeAtomic(join(dir, 'both.yaml'), 'kind: Secret\nmetadata: {name: a\n');
    await waitUntil(() => source.get('a')?.rejected !== null && source.get('b')?.rejected !== null, 1000, 'the refusal');
    assert.equal(servedSerial(source, 'a'), pki.leaf.cert.serial);
    assert.equal(servedSerial(source, 'b'), other.leaf.cert.serial);
    assert.match(source.get('a')!.rejected!.problems[0]!.message, /not valid YAML or JSON/);
    assert.equal(changes.length, before, 'nothing served changed, so nothing is pushed');
    assert.ok(source.origins().some((o) => o.problems.some((p) => /not valid YAML/.test(p.message))));
  });

  test('a secret never valid is known, refused, and served as nothing; a duplicate name is reported and ignored', () => {
    const dir = folder();
    writeAtomic(join(dir, 'a.yaml'), manifestYaml({ name: 'bad', data: { 'tls.crt': 'nope', 'tls.key': 'nope' } }, { name: 'dup', data: tlsData(pki) }));
    writeAtomic(join(dir, 'b.yaml'), manifestYaml({ name: 'dup', data: tlsData(other) }));
    const { source } = open([dir]);
    assert.equal(source.get('bad')!.served, null);
    assert.ok(source.get('bad')!.rejected!.problems.length >= 2);
    assert.equal(servedSerial(source, 'dup'), pki.leaf.cert.serial, 'the first definition in file order wins');
    assert.ok(source.origins().some((o) => o.path.endsWith('b.yaml') && /already defined in/.test(o.problems[0]!.message)));
  });

  test('a configured folder that vanishes (unmounted) keeps the last good versions; they come back with it', async () => {
    const parent = folder();
    const dir = join(parent, 'secrets');
    mkdirSync(dir);
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', data: tlsData(pki) }));
    const { source, changes } = open([dir], { pollIntervalMs: 100 });
    const before = changes.length;
    renameSync(dir, join(parent, 'away'));
    await waitUntil(() => source.get('gw')?.rejected != null, 1000, 'the refusal');
    assert.equal(servedSerial(source, 'gw'), pki.leaf.cert.serial);
    assert.match(source.get('gw')!.rejected!.problems[0]!.message, /no such file or folder/);
    assert.equal(changes.length, before);
    renameSync(join(parent, 'away'), dir);
    await waitUntil(() => source.get('gw')?.rejected === null, 1000, 'the return');
  });

  test('a removed secret goes away and subscribers hear of it', async () => {
    const dir = folder();
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', data: tlsData(pki) }));
    const { source, changes } = open([dir]);
    rmSync(join(dir, 'gw.yaml'));
    await waitUntil(() => source.get('gw') === undefined, 1000, 'the removal');
    assert.deepEqual(changes.at(-1), { names: ['gw'] });
  });
});

describe('the clock', () => {
  test('a staple that expires while served is re-evaluated on a timer, without a restart or a file change', async () => {
    const dir = folder();
    // nextUpdate in about two seconds (whole seconds, as signed).
    const next = new Date(Math.floor(Date.now() / 1000) * 1000 + 2000);
    const staple = await makeStaple(pki.ca, pki.leaf.cert, { nextUpdate: next });
    writeAtomic(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', data: tlsData(pki, { 'tls.ocsp-staple': staple }) }));
    const { source, changes } = open([dir]);
    const ev = () => source.get('gw')!.served!.evaluation;
    assert.equal(ev().staple!.state, 'valid');
    assert.equal(ev().decision!.sds.action, 'send-with-staple');
    await waitUntil(() => ev().staple!.state === 'expired', 4000, 'the staple to expire');
    assert.ok(Date.now() >= next.getTime());
    assert.equal(ev().decision!.gateway.action, 'serve-without-staple', 'OPTIONAL: served without the expired staple');
    assert.equal(ev().decision!.sds.action, 'send-without-staple');
    assert.deepEqual(changes.at(-1), { names: ['gw'] });
  });

  test('with an injected clock: PREFERRED turns to "handshake fails" when the staple expires; MANDATORY too', async () => {
    const dir = folder();
    const staple = await makeStaple(pki.ca, pki.leaf.cert);
    const staple2 = await makeStaple(other.ca, other.leaf.cert);
    writeAtomic(
      join(dir, 's.yaml'),
      manifestYaml(
        { name: 'pref', policy: 'PREFERRED', data: tlsData(pki, { 'tls.ocsp': staple }) },
        { name: 'mand', policy: 'MANDATORY', data: tlsData(other, { 'tls.ocsp': staple2 }) },
      ),
    );
    const clock = new ManualClock();
    const { source, changes } = open([dir], { clock });
    clock.advance(2 * HOUR);
    source.reevaluate();
    for (const name of ['pref', 'mand']) {
      const d = source.get(name)!.served!.evaluation.decision!;
      assert.equal(d.gateway.action, 'fail-handshake', name);
      assert.equal(d.sds.action, 'send-with-staple', `${name}: the expired staple goes to Envoy as it is`);
    }
    assert.deepEqual(changes.at(-1), { names: ['mand', 'pref'] });
  });

  test('mounted folders carry no annotation: the policy comes from configuration', () => {
    const dir = folder();
    writeMountedSecret(join(dir, 'gw'), tlsData(pki));
    const { source } = open([dir], { policies: { gw: 'MANDATORY' } });
    const e = source.get('gw')!;
    assert.equal(e.served, null);
    assert.match(e.rejected!.problems[0]!.message, /MANDATORY policy but no OCSP staple/);
  });

  test('a path that does not exist yet is reported, and read once it appears', async () => {
    const dir = join(tmp.dir, 'later');
    const { source } = open([dir], { pollIntervalMs: 100 });
    assert.match(source.origins()[0]!.problems[0]!.message, /no such file or folder/);
    mkdirSync(dir);
    writeFileSync(join(dir, 'gw.yaml'), manifestYaml({ name: 'gw', data: tlsData(pki) }));
    await waitUntil(() => servedSerial(source, 'gw') === pki.leaf.cert.serial, 1000, 'the new folder');
  });
});
