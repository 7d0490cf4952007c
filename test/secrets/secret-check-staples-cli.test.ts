// `meshcert secret check --data-dir DIR` judges with the staples `meshcert serve` fetched into DIR/ocsp-staples and
// shows the fetch state, offline.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { systemClock } from '../../src/core/index.js';
import { SecretSource, StapleCache, StapleRefresher } from '../../src/secrets/index.js';
import { meshcert, parseJson, show } from '../helpers/cli.js';
import { TestCA, tempDir } from '../helpers/test-ca.js';
import { manifestYaml, writeAtomic } from '../sds/secret-fixtures.js';
import { FakeResponder } from './fake-responder.js';

const tmp = tempDir('meshcert-cli-staples-');
after(() => tmp.cleanup());

test('secret check reads the fetched staple and the fetch state from the data dir; --no-fetched ignores them', async () => {
  const ca = await (await TestCA.root()).child();
  const responder = await FakeResponder.start(ca, systemClock);
  const dataDir = join(tmp.dir, 'data');
  const secrets = join(tmp.dir, 'secrets');
  mkdirSync(secrets);
  try {
    const leaf = await ca.issueServer(['gw.example.com'], { ocspUrls: [responder.url] });
    writeAtomic(join(secrets, 'gw.yaml'), manifestYaml({ name: 'gw', policy: 'MANDATORY', data: { 'tls.crt': leaf.chainPem, 'tls.key': leaf.keyPem } }));
    // What serve does: fetch once into the data dir's cache.
    const refresher = new StapleRefresher({ cache: StapleCache.forDataDir(dataDir), timers: false });
    const source = SecretSource.open({ paths: [secrets], watch: false, staples: refresher });
    await refresher.runDue();
    source.close();
    refresher.close();
  } finally {
    await responder.close();
  }

  const r = await meshcert(['secret', 'check', secrets, '--data-dir', dataDir]);
  assert.equal(r.status, 0, show(r));
  assert.match(r.stdout, /gw \(.*\): servable/);
  assert.match(r.stdout, /staple \(fetched from http:\/\/127\.0\.0\.1:\d+\/ocsp\): valid, status good/);
  assert.match(r.stdout, /staple fetching \(http:\/\/127\.0\.0\.1:\d+\/ocsp\): last fetch \S+: good; next refresh \S+/);

  const j = parseJson((await meshcert(['secret', 'check', secrets, '--data-dir', dataDir, '--json'])).stdout);
  assert.equal(j.secrets[0].staple.origin, 'fetched');
  assert.equal(j.secrets[0].fetch.lastAttempt.result, 'good');

  // Without the fetched staple a MANDATORY secret with none of its own is refused.
  const alone = await meshcert(['secret', 'check', secrets, '--data-dir', dataDir, '--no-fetched']);
  assert.equal(alone.status, 1, show(alone));
  assert.match(alone.stdout, /MANDATORY policy but no OCSP staple/);
  // Another data dir has no cache: the same verdict, and "never fetched".
  const other = await meshcert(['secret', 'check', secrets, '--data-dir', join(tmp.dir, 'empty')]);
  assert.equal(other.status, 1, show(other));
  assert.match(other.stdout, /staple fetching \(http:\/\/127\.0\.0\.1:\d+\/ocsp\): never fetched with this data dir/);
});
