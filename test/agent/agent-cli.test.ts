// `meshcert agent` as a user runs it: the built bin/meshcert as a process, against a `meshcert serve` process.
import assert from 'node:assert/strict';
import { lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Certificate } from '../../src/pki/index.js';
import { SdsClient } from '../../src/sds/index.js';
import { inParallel, meshcert, show } from '../helpers/cli.js';
import { waitForOutput } from '../helpers/meshcert-process.js';
import { CaProcess, SERVER_NAME, TD, spawnBin, tempDir } from './fixtures.js';

const TOKEN = { name: 'vm-1', token: 'vm-one-time-token-0123456789', identity: `${TD}/ns/edge/sa/vm-1`, oneTime: true };
let ca: CaProcess;

before(async () => {
  ca = await new CaProcess([TOKEN]).start();
});

after(async () => {
  await ca?.stop();
});

test('bin/meshcert agent: a one-time bootstrap token, SDS and files, SIGHUP renews, SIGTERM exits 0; restarted, it reuses and renews its certificate', async () => {
  const dir = tempDir();
  const out = join(dir, 'out');
  const sock = join(dir, 'sds.sock');
  const tokenFile = join(dir, 'bootstrap-token');
  writeFileSync(tokenFile, `${TOKEN.token}\n`);
  const args = ['agent', '--ca-address', ca.address, '--ca-root', ca.rootFile, '--ca-server-name', SERVER_NAME, '--out-dir', out, '--sds-uds', sock, '--cert-ttl', '10m', '--log-level', 'warn'];
  const first = spawnBin([...args, '--bootstrap-token-file', tokenFile]);
  let client: SdsClient | null = null;
  try {
    const got = await waitForOutput(first, /^certificate: (\S+) serial ([0-9A-F]+), valid until/m);
    assert.equal(got[1], TOKEN.identity);
    assert.match(first.stdout(), /SDS: unix:\S+sds\.sock \(resources default and ROOTCA\)/);
    client = new SdsClient({ target: `unix:${sock}`, names: ['default', 'ROOTCA'] }).start();
    const s1 = await client.waitFor('default', () => true, 10_000);
    assert.equal(s1.certificates![0]!.serial.toUpperCase().replace(/^0+/, ''), got[2]!.replace(/^0+/, ''));
    assert.ok(lstatSync(join(out, 'cert-chain.pem')).isSymbolicLink());
    assert.equal(statSync(join(out, 'key.pem')).mode & 0o777, 0o600);

    // SIGHUP: a renewal now, with the current certificate (the one-time token is spent).
    first.child.kill('SIGHUP');
    const renewed = await waitForOutput(first, /SIGHUP: renewing now\ncertificate: \S+ serial ([0-9A-F]+)/);
    assert.notEqual(renewed[1], got[2]);
    await client.waitFor('default', (s) => s.certificates![0]!.serial !== s1.certificates![0]!.serial, 10_000);
  } finally {
    client?.close();
    first.child.kill('SIGTERM');
  }
  const end = await first.exited;
  assert.equal(end.code, 0, first.stderr());
  assert.match(first.stdout(), /meshcert agent: stopped \(SIGTERM\)/);

  // Restarted with the same (spent) token: the current certificate in --out-dir is reused, and renewal uses it.
  const held = Certificate.parse(readFileSync(join(out, 'cert-chain.pem')));
  const second = spawnBin([...args, '--bootstrap-token-file', tokenFile, '--renew-at', '0.01', '--renew-jitter', '0']);
  try {
    await waitForOutput(second, new RegExp(`^reusing: ${TOKEN.identity} serial`, 'm'));
    const next = await waitForOutput(second, /^certificate: \S+ serial ([0-9A-F]+)/m);
    assert.notEqual(next[1], held.serial.toUpperCase());
    assert.doesNotMatch(second.stdout(), /renewal failed/);
  } finally {
    second.child.kill('SIGINT');
  }
  assert.equal((await second.exited).code, 0, second.stderr());
});

test('bin/meshcert agent: usage errors exit 2, a missing token exits 1 naming the file', async () => {
  const dir = tempDir();
  const base = ['agent', '--ca-address', '127.0.0.1:1', '--ca-root', ca.rootFile];
  const cases: Array<[string[], RegExp]> = [
    [[...base, '--token-file', 'a', '--bootstrap-token-file', 'b', '--out-dir', dir], /give at most one of --token-file and --bootstrap-token-file/],
    [[...base, '--token-file', 'a'], /give --out-dir and\/or --sds-uds/],
    [[...base, '--token-file', 'a', '--out-dir', dir, '--renew-at', '1.5'], /--renew-at: "1\.5" is not a fraction in \(0, 1\)/],
    [[...base, '--token-file', 'a', '--out-dir', dir, '--key', 'dsa'], /Allowed choices are ec-p256, ec-p384, rsa-2048, rsa-3072/],
  ];
  const missing = join(dir, 'no-token');
  const [r, ...usage] = await inParallel([[...base, '--token-file', missing, '--out-dir', join(dir, 'out')], ...cases.map(([args]) => args)], (args) => meshcert(args));
  usage.forEach((u, i) => {
    assert.equal(u.status, 2, show(u));
    assert.match(u.stderr, cases[i]![1], show(u));
  });
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, new RegExp(`--token-file ${missing}: cannot read the token: no such file \\[MESH_ERR_FILE_READ\\]`));
});
