// `meshcert agent` (the built bin/meshcert) killed with SIGKILL while it rotates every few hundred milliseconds: a
// reader of the output folder always finds one consistent version, and a restart cleans up what a kill left.
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Certificate, keysMatch, parsePrivateKey } from '../../src/pki/index.js';
import { waitForOutput } from '../helpers/meshcert-process.js';
import { CaProcess, SERVER_NAME, TD, spawnBin, tempDir } from './fixtures.js';

const FAST = { name: 'fast', token: 'fast-rotating-token-0123456', identity: `${TD}/ns/edge/sa/fast` };
let ca: CaProcess;

before(async () => {
  ca = await new CaProcess([FAST]).start();
});

after(async () => {
  await ca?.stop();
});

test('bin/meshcert agent killed with SIGKILL while rotating fast: the files are always one consistent version', async () => {
  const dir = tempDir();
  const out = join(dir, 'out');
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, FAST.token);
  const args = ['agent', '--ca-address', ca.address, '--ca-root', ca.rootFile, '--ca-server-name', SERVER_NAME, '--bootstrap-token-file', tokenFile, '--out-dir', out, '--cert-ttl', '2s', '--renew-at', '0.1', '--log-level', 'error'];
  /** What a reader gets: the version ..data names, read as one; the key must belong to the certificate. */
  const readConsistent = (): string | null => {
    let version: string;
    try {
      version = realpathSync(join(out, '..data'));
    } catch {
      return null; // no version yet
    }
    const chain = Certificate.parseAll(readFileSync(join(version, 'cert-chain.pem')));
    const key = parsePrivateKey(readFileSync(join(version, 'key.pem')));
    assert.ok(keysMatch(key, chain[0]!.publicKey), `${version}: key.pem belongs to cert-chain.pem`);
    assert.ok(Certificate.parseAll(readFileSync(join(version, 'root-cert.pem'))).length >= 1);
    return chain[0]!.serial;
  };
  const versions = new Set<string>();
  for (let round = 0; round < 3; round++) {
    const agent = spawnBin(args);
    try {
      await waitForOutput(agent, /^certificate: .*\n(.*\n)*certificate: /m, 30_000);
      // Read while it rotates, then kill it without warning at an arbitrary point.
      const until = Date.now() + 400 + 300 * round;
      while (Date.now() < until) {
        const serial = readConsistent();
        if (serial) versions.add(serial);
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      agent.child.kill('SIGKILL');
    }
    await agent.exited;
    readConsistent();
  }
  assert.ok(versions.size >= 3, `saw ${versions.size} versions`);
  // After the last kill: one current version folder (a half-written one, if any, is removed at the next start).
  const restarted = spawnBin(args);
  try {
    await waitForOutput(restarted, /^(certificate|reusing): /m, 30_000);
    const folders = readdirSync(out).filter((n) => n.startsWith('..') && n !== '..data' && lstatSync(join(out, n)).isDirectory());
    assert.ok(folders.length <= 2, `version folders: ${folders.join(', ')}`);
    assert.ok(existsSync(realpathSync(join(out, '..data'))));
    readConsistent();
  } finally {
    restarted.child.kill('SIGTERM');
  }
  assert.equal((await restarted.exited).code, 0, restarted.stderr());
});
