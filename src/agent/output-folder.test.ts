import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCodes, isMeshError } from '../core/index.js';
import { DATA_LINK, OUTPUT_FILES, OutputFolder } from './output-folder.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'meshcert-out-'));
// Placeholder texts: the folder does not parse what it writes, and no key material belongs in the tree.
const v = (n: number) => ({ certChainPem: `chain ${n}\n`, keyPem: `key ${n}\n`, rootCertPem: `roots ${n}\n` });

test('each version is a folder swapped in through ..data; the file names are symlinks through it; key.pem is 0600', () => {
  const out = join(tmp(), 'out');
  const folder = new OutputFolder(out);
  folder.prepare();
  const first = folder.write(v(1));
  assert.equal(readlinkSync(join(out, DATA_LINK)), first);
  for (const f of Object.values(OUTPUT_FILES)) {
    assert.ok(lstatSync(join(out, f)).isSymbolicLink(), f);
    assert.equal(readlinkSync(join(out, f)), `${DATA_LINK}/${f}`);
  }
  assert.equal(statSync(join(out, OUTPUT_FILES.key)).mode & 0o777, 0o600);
  assert.equal(statSync(join(out, OUTPUT_FILES.certChain)).mode & 0o777, 0o644);
  assert.deepEqual(folder.read(), v(1));

  const second = folder.write(v(2));
  assert.notEqual(second, first);
  assert.equal(realpathSync(join(out, OUTPUT_FILES.key)), join(out, second, OUTPUT_FILES.key));
  assert.deepEqual(folder.read(), v(2));
  // The version just replaced stays for a reader that resolved ..data before the swap; the one before it is gone.
  assert.deepEqual(readdirSync(out).sort(), [DATA_LINK, first, second, ...Object.values(OUTPUT_FILES)].sort());
  const third = folder.write(v(3));
  assert.deepEqual(readdirSync(out).sort(), [DATA_LINK, second, third, ...Object.values(OUTPUT_FILES)].sort());
  assert.deepEqual(folder.read(), v(3));
});

test('plain files from `cert request` are replaced by the links; crash leftovers are removed at the next start', () => {
  const out = tmp();
  writeFileSync(join(out, OUTPUT_FILES.certChain), 'old chain\n');
  writeFileSync(join(out, OUTPUT_FILES.key), 'old key\n', { mode: 0o600 });
  const folder = new OutputFolder(out);
  folder.prepare();
  const current = folder.write(v(1));
  assert.deepEqual(folder.read(), v(1));
  // A version folder half-written when the agent was killed, and a temp link: never current, removed on prepare().
  mkdirSync(join(out, '..2026-01-01T00-00-00.000Z.dead00'));
  writeFileSync(join(out, '..2026-01-01T00-00-00.000Z.dead00', OUTPUT_FILES.certChain), 'torn');
  new OutputFolder(out).prepare();
  assert.equal(existsSync(join(out, '..2026-01-01T00-00-00.000Z.dead00')), false);
  assert.equal(readlinkSync(join(out, DATA_LINK)), current);
  assert.equal(readFileSync(join(out, OUTPUT_FILES.certChain), 'utf8'), 'chain 1\n');
});

test('an output folder that cannot be written is a clear FILE_WRITE error naming it', () => {
  const dir = tmp();
  const blocker = join(dir, 'a-file');
  writeFileSync(blocker, 'x');
  const out = join(blocker, 'out');
  assert.throws(
    () => new OutputFolder(out).prepare(),
    (e) => isMeshError(e, ErrorCodes.FILE_WRITE) && e.message.includes(`--out-dir ${out}: not writable`),
  );
});
