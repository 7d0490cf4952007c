import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSecretManifests } from './index.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('several documents, data in base64, stringData merged over data, annotations, namespace', () => {
  const text = `
apiVersion: v1
kind: Secret
metadata:
  name: gw
  namespace: istio-system
  annotations:
    kubernetes.io/ocsp-policy: MANDATORY
type: kubernetes.io/tls
data:
  tls.crt: ${b64('CERT')}
  tls.key: ${b64('KEY')}
stringData:
  tls.key: CLEAR KEY
---
# a comment-only document and an empty one are fine
---
apiVersion: v1
kind: Secret
metadata: { name: gw-cacert }
data:
  ca.crt: ${b64('CA')}
`;
  const out = parseSecretManifests(text, 'secrets/gw.yaml');
  assert.equal(out.fileError, undefined);
  assert.deepEqual(out.problems, []);
  assert.equal(out.secrets.length, 2);
  const [gw, ca] = out.secrets;
  assert.equal(gw!.name, 'gw');
  assert.equal(gw!.namespace, 'istio-system');
  assert.equal(gw!.type, 'kubernetes.io/tls');
  assert.deepEqual(gw!.annotations, { 'kubernetes.io/ocsp-policy': 'MANDATORY' });
  assert.equal(gw!.data.get('tls.crt')!.toString(), 'CERT');
  assert.equal(gw!.data.get('tls.key')!.toString(), 'CLEAR KEY', 'stringData wins, as the API server merges it');
  assert.equal(gw!.source, 'secrets/gw.yaml (document 1)');
  assert.equal(ca!.name, 'gw-cacert');
  assert.equal(ca!.type, 'Opaque', 'a manifest without type is Opaque');
  assert.equal(ca!.source, 'secrets/gw.yaml (document 3)');
});

test('JSON, and a kind: List as `kubectl get secrets -o json` prints several', () => {
  const list = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'a' }, type: 'Opaque', data: { cert: b64('C') } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm' }, data: { x: 'y' } },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'b' }, stringData: { key: 'K' } },
    ],
  };
  const out = parseSecretManifests(JSON.stringify(list, null, 2), 'all.json');
  assert.deepEqual(
    out.secrets.map((s) => [s.name, s.type, [...s.data.keys()]]),
    [
      ['a', 'Opaque', ['cert']],
      ['b', 'Opaque', ['key']],
    ],
  );
  assert.equal(out.ignored.length, 1);
  assert.match(out.ignored[0]!, /items\[1\]: a ConfigMap, not a Secret/);
});

test('a document with a mistake is reported with its name and skipped; the others count', () => {
  const text = [
    'kind: Secret\nmetadata: {name: good}\ndata: {tls.crt: ' + b64('x') + '}',
    'kind: Secret\nmetadata: {name: bad}\ndata: {tls.crt: "not base64!"}',
    'kind: Secret\nmetadata: {name: Bad_Name}\n',
    'kind: Secret\nmetadata: {}\n',
    'kind: Secret\nmetadata: {name: ann}\n  \nmetadata2: 1\n',
  ].join('\n---\n');
  const out = parseSecretManifests(text, 'f.yaml');
  assert.deepEqual(
    out.secrets.map((s) => s.name),
    ['good', 'ann'],
  );
  const msgs = out.problems.map((p) => `${p.name ?? '-'}: ${p.problem.message}`);
  assert.ok(msgs.some((m) => /^bad: f.yaml \(document 2\): data\["tls.crt"\] is not base64; put clear text under stringData instead/.test(m)), msgs.join('\n'));
  assert.ok(msgs.some((m) => /metadata.name "Bad_Name" is not a valid Secret name/.test(m)), msgs.join('\n'));
  assert.ok(msgs.some((m) => /document 4\): metadata.name is missing/.test(m)), msgs.join('\n'));
});

test('base64 folded over several lines is accepted, as the API server accepts it', () => {
  const long = b64('x'.repeat(200));
  const folded = long.match(/.{1,60}/g)!.join('\n    ');
  const out = parseSecretManifests(`kind: Secret\nmetadata: {name: s}\ndata:\n  tls.crt: |\n    ${folded}\n`, 'f.yaml');
  assert.equal(out.secrets[0]!.data.get('tls.crt')!.toString(), 'x'.repeat(200));
});

test('a file that is not YAML is a file error: nothing of it is trusted', () => {
  const out = parseSecretManifests('kind: Secret\nmetadata: {name: a\n---\nkind: Secret\nmetadata: {name: b}\n', 'broken.yaml');
  assert.ok(out.fileError);
  assert.equal(out.fileError.code, 'manifest');
  assert.match(out.fileError.message, /^broken.yaml(:\d+)?: not valid YAML or JSON/);
  assert.deepEqual(out.secrets, []);
});

test('invalid keys, non-string annotation values and stringData values are reported', () => {
  const out = parseSecretManifests(
    'kind: Secret\nmetadata:\n  name: s\n  annotations: {kubernetes.io/ocsp-policy: 3}\nstringData: {"bad key": x, n: 5}\n',
    'f.yaml',
  );
  assert.equal(out.secrets.length, 0);
  const text = out.problems.map((p) => p.problem.message).join('\n');
  assert.match(text, /annotations\["kubernetes.io\/ocsp-policy"\] must be a string/);
  assert.match(text, /stringData key "bad key" is not a valid Secret key/);
  assert.match(text, /stringData\["n"\] must be a string/);
});
