// Interop: an independent SDS client (Debian's python3-grpcio, the gRPC C core, and python3-protobuf with classes
// from a `protoc` descriptor set of Envoy's protos made at test time) reads Secrets from meshcert's SDS server, over
// the Unix socket and over mTLS on 127.0.0.1, including one pushed after a file change.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { SDS_PROTO_FILES, SECRET_TYPE_URL, sdsIncludeDirs } from '../../src/sds/index.js';
import { tempDir } from '../helpers/test-ca.js';
import { startHarness, type Harness } from './sds-harness.js';
import { gatewayPki, makeCrl, makeStaple, manifestYaml, tlsData, writeAtomic, type GatewayPki } from './secret-fixtures.js';
import { skipUnlessCi } from '../helpers/peers.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('./python/sds_decode.py', import.meta.url));

function missing(): string | false {
  const py = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { encoding: 'utf8' });
  if (py.error || py.status !== 0) return 'needs Debian python3-grpcio and python3-protobuf (apt-get install -y python3-grpcio python3-protobuf)';
  const protoc = spawnSync('protoc', ['--version'], { encoding: 'utf8' });
  if (protoc.error || protoc.status !== 0) return 'needs protoc (apt-get install -y protobuf-compiler)';
  if (!existsSync('/usr/include/google/protobuf/any.proto')) return "needs protobuf's well-known types (apt-get install -y libprotobuf-dev)";
  return false;
}
const skip = skipUnlessCi(missing());

const tmp = tempDir('meshcert-sds-python-');
const secrets = join(tmp.dir, 'secrets');
let descriptorSet: string;
let h: Harness;
let pki: GatewayPki;
let pki2: GatewayPki;
let staple: Buffer;
let crlPem: string;

interface Line {
  version_info?: string;
  nonce?: string;
  type_url?: string;
  error?: string;
  details?: string;
  resources?: Array<Record<string, string | null>>;
}

before(async () => {
  if (skip) return;
  // Envoy's protos compiled by protoc, with the well-known types protoc itself ships.
  descriptorSet = join(tmp.dir, 'sds.pb');
  const res = spawnSync('protoc', [...sdsIncludeDirs().map((d) => `-I${d}`), '-I/usr/include', '--include_imports', `--descriptor_set_out=${descriptorSet}`, ...SDS_PROTO_FILES], {
    encoding: 'utf8',
  });
  assert.equal(res.status, 0, res.stderr);
  mkdirSync(secrets);
  pki = await gatewayPki({ dnsName: 'interop.example.com' });
  pki2 = await gatewayPki({ dnsName: 'interop.example.com' });
  staple = await makeStaple(pki.ca, pki.leaf.cert);
  const crl = await makeCrl(pki.root);
  crlPem = `-----BEGIN X509 CRL-----\n${crl.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END X509 CRL-----\n`;
  writeAtomic(
    join(secrets, 'interop.yaml'),
    manifestYaml({ name: 'interop', policy: 'PREFERRED', data: tlsData(pki, { 'tls.ocsp-staple': staple, 'ca.crt': pki.root.cert.pem, 'ca.crl': crl }) }),
  );
  h = await startHarness(secrets, tmp.dir);
});

after(async () => {
  await h?.close();
  tmp.cleanup();
});

/** Runs the decoder; `onLine` sees each JSON line as it comes (to change files between responses). */
function runDecoder(args: string[], onLine: (line: Line, i: number) => void = () => undefined): Promise<{ lines: Line[]; status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [SCRIPT, '--descriptor-set', descriptorSet, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Line[] = [];
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    createInterface({ input: child.stdout }).on('line', (l) => {
      const parsed = JSON.parse(l) as Line;
      lines.push(parsed);
      onLine(parsed, lines.length - 1);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ lines, status, stderr });
    });
  });
}

test('python-grpcio decodes the Secrets over the Unix socket, and one pushed after a file change', { skip }, async () => {
  const { lines, status, stderr } = await runDecoder(
    ['--target', `unix:${h.socket}`, '--name', 'kubernetes://interop', '--name', 'kubernetes://interop-cacert', '--count', '3'],
    (_line, i) => {
      // After the two initial responses, a new certificate (without a staple) is written: a third one is pushed.
      if (i === 1) writeAtomic(join(secrets, 'interop.yaml'), manifestYaml({ name: 'interop', data: tlsData(pki2, { 'ca.crt': pki.root.cert.pem, 'ca.crl': Buffer.from(crlPem) }) }));
    },
  );
  assert.equal(status, 0, `${stderr}\n${JSON.stringify(lines)}`);
  assert.equal(lines.length, 3);
  for (const l of lines) {
    assert.equal(l.type_url, SECRET_TYPE_URL);
    assert.match(l.version_info!, /^[0-9a-f]{16}$/);
    assert.ok(l.nonce);
    assert.equal(l.resources!.length, 1);
    assert.equal(l.resources![0]!.type_url, SECRET_TYPE_URL);
  }
  const byName = new Map(lines.slice(0, 2).map((l) => [l.resources![0]!.name, l.resources![0]!]));
  const tls = byName.get('kubernetes://interop')!;
  assert.equal(tls.kind, 'tls_certificate');
  assert.equal(tls.certificate_chain, pki.leaf.chainPem);
  assert.equal(tls.private_key_sha256, createHash('sha256').update(pki.leaf.keyPem).digest('hex'), 'the key as PKCS#8 PEM');
  assert.equal(tls.ocsp_staple_b64, staple.toString('base64'));
  assert.equal(tls.ocsp_staple_specifier, 'inline_bytes');
  const ca = byName.get('kubernetes://interop-cacert')!;
  assert.equal(ca.kind, 'validation_context');
  assert.equal(ca.trusted_ca, pki.root.cert.pem);
  assert.equal(ca.crl, crlPem);
  const pushed = lines[2]!.resources![0]!;
  assert.equal(pushed.name, 'kubernetes://interop');
  assert.equal(pushed.certificate_chain, pki2.leaf.chainPem);
  assert.equal(pushed.ocsp_staple_b64, null);
  assert.notEqual(lines[2]!.version_info, lines[0]!.version_info);
  // The ACKs python sent were understood as ACKs.
  assert.match(await h.metrics(), /meshcert_sds_acks_total [1-9]/);
});

test('python-grpcio over mTLS on 127.0.0.1', { skip }, async () => {
  const leaf = await h.ca.issueSvid('spiffe://cluster.local/ns/istio-system/sa/python');
  const files = { root: join(tmp.dir, 'root.pem'), cert: join(tmp.dir, 'client.pem'), key: join(tmp.dir, 'client-key.pem') };
  writeFileSync(files.root, h.ca.cert.pem);
  writeFileSync(files.cert, leaf.chainPem);
  writeFileSync(files.key, leaf.keyPem, { mode: 0o600 });
  const { lines, status, stderr } = await runDecoder([
    '--target',
    `127.0.0.1:${h.port}`,
    '--root-cert',
    files.root,
    '--server-name',
    'sds.meshcert.test',
    '--client-cert',
    files.cert,
    '--client-key',
    files.key,
    '--name',
    'kubernetes://interop-cacert',
  ]);
  assert.equal(status, 0, `${stderr}\n${JSON.stringify(lines)}`);
  assert.equal(lines[0]!.resources![0]!.kind, 'validation_context');
  assert.equal(lines[0]!.resources![0]!.trusted_ca, pki.root.cert.pem);
});
