import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, ManualClock, isMeshError } from '../core/index.js';
import { SqliteLedger } from '../store/index.js';
import { tempDir } from '../../test/helpers/test-ca.js';
import { BootstrapTokenAuthenticator, hashBootstrapToken, parseBootstrapTokens } from './bootstrap-token-authenticator.js';
import { WatchedFile } from './watched-file.js';

const T0 = Date.parse('2025-06-01T12:00:00Z');
const TD = 'cluster.local';
const PLAIN = 'plain-token-0123456789abcdef';
const HASHED = 'hashed-token-fedcba9876543210';
const ONCE = 'one-time-token-aaaabbbbccccdddd';
const OLD = 'expired-token-1111222233334444';

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function tokenFile(extra = ''): string {
  return `
tokens:
  - name: lab-runner
    token: ${PLAIN}
    identity: spiffe://cluster.local/ns/lab/sa/runner
  - name: vm-edge-1
    tokenSha256: ${hashBootstrapToken(HASHED).toUpperCase()}
    identity: spiffe://cluster.local/ns/edge/sa/vm-1
    expires: 2025-12-31T00:00:00Z
  - name: once
    tokenSha256: ${hashBootstrapToken(ONCE)}
    identity: spiffe://cluster.local/ns/edge/sa/vm-2
    oneTime: true
  - name: old
    token: "${OLD}"
    identity: spiffe://cluster.local/ns/edge/sa/vm-3
    expires: 2025-06-01T11:00:00+00:00
${extra}`;
}

function configProblem(...parts: RegExp[]) {
  return (err: unknown): boolean => {
    assert.ok(isMeshError(err, ErrorCodes.CONFIG), `expected CONFIG, got ${String(err)}`);
    for (const p of parts) assert.match(err.message, p);
    return true;
  };
}

describe('BootstrapTokenAuthenticator', () => {
  const t = tempDir('meshcert-bootstrap-');
  const clock = new ManualClock(T0);
  let ledger: SqliteLedger;
  let file: string;
  let auth: BootstrapTokenAuthenticator;

  before(() => {
    ledger = SqliteLedger.open(join(t.dir, 'ledger.db'), { clock });
    file = t.file('tokens.yaml', tokenFile());
    auth = new BootstrapTokenAuthenticator({ file, trustDomain: TD, ledger, clock });
  });
  after(async () => {
    await ledger.close();
    t.cleanup();
  });

  test('a plain token and a SHA-256-only token each give their identity', async () => {
    const a = await auth.authenticate(bearer(PLAIN));
    assert.equal(a?.spiffeId.toString(), 'spiffe://cluster.local/ns/lab/sa/runner');
    assert.equal(a?.method, 'bootstrap-token');
    assert.equal(a?.principal, 'bootstrap token lab-runner');
    assert.ok(!a?.principal.includes(PLAIN));
    await a?.commit?.(); // reusable tokens: commit is a no-op, again and again
    await a?.commit?.();
    const b = await auth.authenticate(bearer(HASHED));
    assert.equal(b?.spiffeId.toString(), 'spiffe://cluster.local/ns/edge/sa/vm-1');
    assert.ok(await auth.authenticate(bearer(PLAIN)));
  });

  test('no bearer: null; an unknown token: UNAUTHENTICATED; a JWT-shaped unknown token: null (the JWT authenticator decides)', async () => {
    assert.equal(await auth.authenticate({}), null);
    assert.equal(await auth.authenticate({ authorization: 'Basic abc' }), null);
    await assert.rejects(auth.authenticate(bearer('not-a-known-token-123456')), (e: unknown) =>
      isMeshError(e, ErrorCodes.UNAUTHENTICATED) && /not a known bootstrap token/.test(e.message) && !e.message.includes('not-a-known'));
    await assert.rejects(auth.authenticate(bearer('')), (e: unknown) => isMeshError(e, ErrorCodes.UNAUTHENTICATED));
    assert.equal(await auth.authenticate(bearer('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln')), null);
  });

  test('an expired token is refused with its name and expiry', async () => {
    await assert.rejects(auth.authenticate(bearer(OLD)), (e: unknown) =>
      isMeshError(e, ErrorCodes.UNAUTHENTICATED) && e.message === 'bootstrap token "old" expired at 2025-06-01T11:00:00.000Z; ask for a new one');
    clock.set(Date.parse('2025-12-31T00:00:00Z'));
    try {
      await assert.rejects(auth.authenticate(bearer(HASHED)), (e: unknown) => isMeshError(e, ErrorCodes.UNAUTHENTICATED) && /"vm-edge-1" expired/.test(e.message));
    } finally {
      clock.set(T0);
    }
  });

  test('a one-time token is spent by commit(): a replay is refused, also from another authenticator on the same ledger', async () => {
    const first = await auth.authenticate(bearer(ONCE));
    assert.equal(first?.principal, 'bootstrap token once (one-time)');
    // Not spent until committed (the RA commits only once the request is authorized).
    const second = await auth.authenticate(bearer(ONCE));
    await first!.commit!();
    await assert.rejects(second!.commit!(), (e: unknown) =>
      isMeshError(e, ErrorCodes.UNAUTHENTICATED) && e.message === 'one-time bootstrap token "once" was already used; ask for a new one');
    const replica = new BootstrapTokenAuthenticator({ file, trustDomain: TD, ledger, clock });
    const third = await replica.authenticate(bearer(ONCE));
    await assert.rejects(third!.commit!(), (e: unknown) => isMeshError(e, ErrorCodes.UNAUTHENTICATED) && /already used/.test(e.message));
  });

  test('changes to the file are picked up on the next request: added, removed, replaced by rename', async () => {
    const NEW = 'new-token-5555666677778888';
    await assert.rejects(auth.authenticate(bearer(NEW)), (e: unknown) => isMeshError(e, ErrorCodes.UNAUTHENTICATED));
    writeFileSync(file, tokenFile(`  - name: new\n    token: ${NEW}\n    identity: spiffe://cluster.local/ns/new/sa/svc\n`));
    assert.equal((await auth.authenticate(bearer(NEW)))?.spiffeId.toString(), 'spiffe://cluster.local/ns/new/sa/svc');
    // Atomic replacement (write a temp file, rename over), as editors and config management do.
    const tmp = join(t.dir, 'tokens.yaml.tmp');
    writeFileSync(tmp, `tokens:\n  - name: only\n    token: ${NEW}\n    identity: spiffe://cluster.local/ns/new/sa/other\n`);
    renameSync(tmp, file);
    assert.equal((await auth.authenticate(bearer(NEW)))?.spiffeId.toString(), 'spiffe://cluster.local/ns/new/sa/other');
    await assert.rejects(auth.authenticate(bearer(PLAIN)), (e: unknown) => isMeshError(e, ErrorCodes.UNAUTHENTICATED));
    // Broken: fail closed with a CONFIG error naming the file and line, never quoting it; fixed: works again.
    writeFileSync(file, `tokens:\n  - name: x\n    token: "${PLAIN}\n  bad: [`);
    await assert.rejects(auth.authenticate(bearer(NEW)), (e: unknown) =>
      isMeshError(e, ErrorCodes.CONFIG) && e.message.includes(file) && /line \d+/.test(e.message) && !e.message.includes(PLAIN));
    rmSync(file);
    await assert.rejects(auth.authenticate(bearer(NEW)), (e: unknown) => isMeshError(e, ErrorCodes.FILE_READ) && /no such file/.test(e.message));
    writeFileSync(file, tokenFile());
    assert.ok(await auth.authenticate(bearer(PLAIN)));
  });

  test('bad files: CONFIG errors naming the file and each field, never the token', () => {
    const parse = (text: string) => () => parseBootstrapTokens(text, '/etc/meshcert/tokens.yaml', TD);
    assert.throws(parse('tokens:\n  - name: a\n    token: short\n    identity: spiffe://cluster.local/ns/a/sa/b\n'),
      configProblem(/\/etc\/meshcert\/tokens\.yaml: invalid bootstrap token file/, /tokens\[0\]\.token: too short/));
    assert.throws(parse('tokens:\n  - name: a\n    token: tiny-secret\n    identity: spiffe://cluster.local/ns/a/sa/b\n'), (e: unknown) => isMeshError(e) && !e.message.includes('tiny-secret'));
    assert.throws(parse(`tokens:\n  - name: a\n    token: ${PLAIN}\n    tokenSha256: ${'a'.repeat(64)}\n    identity: spiffe://cluster.local/ns/a/sa/b\n`), configProblem(/tokens\[0\]: give exactly one of token or tokenSha256/));
    assert.throws(parse(`tokens:\n  - name: a\n    tokenSha256: abc\n    identity: spiffe://cluster.local/ns/a/sa/b\n`), configProblem(/tokens\[0\]\.tokenSha256: expected 64 hex digits/));
    assert.throws(parse(`tokens:\n  - name: a\n    token: ${PLAIN}\n    identity: spiffe://other.td/ns/a/sa/b\n  - name: a\n    token: ${PLAIN}\n    identity: not-an-id\n    expires: tomorrow\n    colour: blue\n`),
      configProblem(/tokens\[1\]: colour: unknown field|tokens\[1\]\.colour: unknown field/));
    assert.throws(parse(`tokens:\n  - name: a\n    token: ${PLAIN}\n    identity: spiffe://other.td/ns/a/sa/b\n  - name: a\n    token: ${PLAIN}\n    identity: not-an-id\n    expires: tomorrow\n`),
      configProblem(/tokens\[0\]\.identity: "spiffe:\/\/other\.td\/ns\/a\/sa\/b" is not in this CA's trust domain "cluster\.local"/, /tokens\[1\]\.name: "a" is used twice/,
        /tokens\[1\]: the same token as "a"/, /tokens\[1\]\.identity: "not-an-id" is not a SPIFFE ID/, /tokens\[1\]\.expires: not an ISO 8601/));
    assert.throws(parse(`tokens:\n  - name: a\n    token: 12345678901234567890\n    identity: spiffe://cluster.local/ns/a/sa/b\n`), configProblem(/tokens\[0\]\.token: expected a string; quote the token/));
    assert.throws(parse(`tokens:\n  - name: a\n    token: aaaaaaaaaa.bbbbbbbbbb.cccccccccc\n    identity: spiffe://cluster.local/ns/a/sa/b\n`), configProblem(/shape of a JWT/));
    assert.throws(parse('- just a list'), configProblem(/expected a mapping with a "tokens" list/));
    assert.throws(parse('tokens: [\n'), configProblem(/not valid YAML at line/));
    assert.deepEqual(parseBootstrapTokens('', 'f', TD), []);
    assert.deepEqual(parseBootstrapTokens('tokens: []', 'f', TD), []);
    // The constructor reads the file at once: a bad file stops the server at start.
    assert.throws(() => new BootstrapTokenAuthenticator({ file: t.file('bad.yaml', 'tokens: 3'), trustDomain: TD, ledger, clock }), configProblem(/bad\.yaml.*tokens:/s));
  });

  test('several trust domains: an identity in any of them is allowed; one in none is refused at load, naming the file and entry', async () => {
    const domains = [TD, 'partner.example'];
    const file = t.file('two-domains.yaml', `tokens:\n  - name: main\n    token: ${PLAIN}-main\n    identity: spiffe://cluster.local/ns/a/sa/b\n  - name: partner\n    token: ${PLAIN}-partner\n    identity: spiffe://partner.example/ns/a/sa/b\n`);
    const auth = new BootstrapTokenAuthenticator({ file, trustDomain: domains, ledger, clock });
    assert.equal((await auth.authenticate(bearer(`${PLAIN}-partner`)))?.spiffeId.toString(), 'spiffe://partner.example/ns/a/sa/b');
    assert.equal((await auth.authenticate(bearer(`${PLAIN}-main`)))?.spiffeId.toString(), 'spiffe://cluster.local/ns/a/sa/b');
    const stray = t.file('stray.yaml', `tokens:\n  - name: ok\n    token: ${PLAIN}-ok\n    identity: spiffe://partner.example/ns/a/sa/b\n  - name: stray\n    token: ${PLAIN}-stray\n    identity: spiffe://elsewhere.example/ns/a/sa/b\n`);
    assert.throws(
      () => new BootstrapTokenAuthenticator({ file: stray, trustDomain: domains, ledger, clock }),
      (e: unknown) =>
        configProblem(
          /tokens\[1\]\.identity: "spiffe:\/\/elsewhere\.example\/ns\/a\/sa\/b" is in trust domain "elsewhere\.example", which this CA does not sign for \("cluster\.local", "partner\.example"\)/,
        )(e) && (e as Error).message.startsWith(`${stray}: invalid bootstrap token file`),
    );
  });
});

describe('WatchedFile', () => {
  test('trims, parses once per version of the file, and remembers a parse error until the file changes', () => {
    const t = tempDir('meshcert-watched-');
    try {
      const path = t.file('v.txt', '\n  one  \n');
      let parses = 0;
      const w = new WatchedFile(path, 'test file', (text) => {
        parses++;
        if (text === 'bad') throw new Error('bad content');
        return text;
      });
      assert.equal(w.get(), 'one');
      assert.equal(w.get(), 'one');
      assert.equal(parses, 1);
      writeFileSync(path, 'two\n');
      assert.equal(w.get(), 'two');
      writeFileSync(path, 'bad');
      assert.throws(() => w.get(), (e: unknown) => isMeshError(e, ErrorCodes.CONFIG) && e.message === `${path}: invalid test file: bad content`);
      assert.throws(() => w.get());
      assert.equal(parses, 3);
      writeFileSync(path, 'three');
      assert.equal(w.get(), 'three');
    } finally {
      t.cleanup();
    }
  });
});
