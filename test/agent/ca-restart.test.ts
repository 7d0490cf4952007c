// The CA goes away and comes back (a real `meshcert serve` process stopped with SIGTERM and started again on the same
// port and data dir): agents keep serving while their certificate is valid, stop serving it at expiry and say so,
// and renew once the CA is back.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { TestCA } from '../helpers/test-ca.js';
import { ErrorCodes } from '../../src/core/index.js';
import { SdsClient } from '../../src/sds/index.js';
import { SDS_DEFAULT, SDS_ROOTCA, type Agent, type CertificateEvent, type FailureEvent } from '../../src/agent/index.js';
import { CaProcess, TD, freePort, httpGet, nextEvent, startAgent, tempDir } from './fixtures.js';

test('CA stopped: agents keep serving until expiry, then stop serving loudly; CA restarted with a second root: they renew and serve both roots', async () => {
  const tokens = [
    { name: 'long', token: 'long-token-0123456789abcdef', identity: `${TD}/ns/ops/sa/long` },
    { name: 'short', token: 'short-token-0123456789abcde', identity: `${TD}/ns/ops/sa/short` },
  ];
  const ca = await new CaProcess(tokens, await freePort()).start();
  const agents: Agent[] = [];
  const clients: SdsClient[] = [];
  try {
    const dir = tempDir();
    // The agents' own copy of the trust bundle: a root the CA adds reaches them through the CA's answers.
    const caRoot = join(dir, 'ca-root.pem');
    copyFileSync(ca.rootFile, caRoot);
    const mk = async (name: string, token: string, certTtlMs: number, renewAt: number) => {
      const file = join(dir, `${name}.token`);
      writeFileSync(file, token);
      const agent = await startAgent(ca, {
        caRootFile: caRoot,
        bootstrapTokenFile: file,
        sdsUds: join(dir, `${name}.sock`),
        adminListen: { host: '127.0.0.1', port: 0 },
        certTtlMs,
        rotation: { renewAt, jitter: 0, backoffInitialMs: 100, backoffMaxMs: 300 },
      });
      agents.push(agent);
      const client = new SdsClient({ target: `unix:${agent.addresses.sdsUds}`, names: [SDS_DEFAULT, SDS_ROOTCA], backoff: { initialMs: 50, maxMs: 200 } }).start();
      clients.push(client);
      return { agent, client, first: await agent.firstCertificate() };
    };
    // long: 60 s, renews at 10% (6 s), enough to outlive the CA's restart; short: 3 s, expires while the CA is down.
    const long = await mk('long', tokens[0]!.token, 60_000, 0.1);
    const short = await mk('short', tokens[1]!.token, 3_000, 0.5);
    await long.client.waitFor(SDS_DEFAULT);
    await short.client.waitFor(SDS_DEFAULT);

    const shortExpired = nextEvent<{ notAfter: Date }>(short.agent, 'expired');
    const longFailed = nextEvent<FailureEvent>(long.agent, 'failure', () => true, 30_000);
    await ca.stop();

    // short: renewals fail, its certificate expires: no longer served over SDS, /healthz 503.
    const expired = await shortExpired;
    assert.equal(expired.notAfter.getTime(), short.first.notAfter.getTime());
    assert.equal(short.agent.current, null);
    const fetched = await short.client.fetch([SDS_DEFAULT, SDS_ROOTCA]);
    assert.deepEqual(fetched.secrets.map((s) => s.name), [SDS_ROOTCA], 'the expired certificate is withheld');
    const h = await httpGet(short.agent.addresses.admin!, '/healthz');
    assert.equal(h.status, 503);
    assert.match(h.body, /expired at .* and is no longer served; last error: CA at 127\.0\.0\.1:\d+/);
    const m = (await httpGet(short.agent.addresses.admin!, '/metrics')).body;
    assert.match(m, /^meshcert_agent_certificate_valid 0$/m);
    assert.match(m, /^meshcert_agent_certificate_expirations_total 1$/m);
    assert.match(m, new RegExp(`^meshcert_agent_last_error_timestamp_seconds\\{code="${ErrorCodes.UNAVAILABLE}"\\} \\d`, 'm'));

    // long: its renewal failed, but the certificate is valid and still served.
    const failed = await longFailed;
    assert.equal(failed.error.code, ErrorCodes.UNAVAILABLE);
    assert.equal(failed.servingUntil?.getTime(), long.first.notAfter.getTime());
    assert.equal(long.agent.current?.leaf.serial, long.agent.current?.leaf.serial);
    assert.equal((await httpGet(long.agent.addresses.admin!, '/healthz')).status, 200);
    assert.equal((await long.client.fetch([SDS_DEFAULT])).secrets.length, 1);

    // The CA comes back on the same address: both renew; long with its current certificate, short with its token.
    const longRenewed = nextEvent<CertificateEvent>(long.agent, 'certificate', () => true, 30_000);
    const shortRenewed = nextEvent<CertificateEvent>(short.agent, 'certificate', () => true, 30_000);
    // Meanwhile a root rotation began: the CA's trust bundle (root-cert.pem) now holds a second root.
    const next = await TestCA.root({ name: 'next mesh root' });
    writeFileSync(ca.rootFile, readFileSync(ca.rootFile, 'utf8') + next.cert.pem);
    await ca.start();
    const lr = await longRenewed;
    assert.equal(lr.method, 'certificate');
    assert.equal(lr.spiffeId, tokens[0]!.identity);
    assert.notEqual(lr.serial, long.first.serial);
    assert.ok(lr.receivedAt.getTime() < long.first.notAfter.getTime(), 'renewed before the old certificate expired');
    const sr = await shortRenewed;
    assert.equal(sr.method, 'bootstrap-token');
    const served = await short.client.waitFor(SDS_DEFAULT, (s) => s.certificates![0]!.notAfter.getTime() > Date.now(), 10_000);
    assert.deepEqual(served.certificates![0]!.spiffeIds, [tokens[1]!.identity]);
    assert.equal((await httpGet(short.agent.addresses.admin!, '/healthz')).status, 200);
    // The new root came with the CA's answers and reached the proxies over SDS without a restart.
    for (const { client, agent } of [long, short]) {
      const roots = await client.waitFor(SDS_ROOTCA, (s) => (s.caCertificates?.length ?? 0) === 2, 10_000);
      assert.ok(roots.caCertificates!.some((c) => c.fingerprint256 === next.cert.fingerprint256));
      assert.equal(agent.trustBundle.length, 2);
    }
  } finally {
    for (const c of clients) c.close();
    await Promise.all(agents.map((a) => a.stop()));
    await ca.stop();
  }
});
