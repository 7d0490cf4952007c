// An independent gRPC implementation gets a certificate from the real control plane: Debian's python3-grpcio (the
// gRPC C core) and python3-protobuf, with message classes built from a descriptor set that protoc makes from our
// ca.proto at test time (test/server/python/istio_ca_client.py). Nothing of grpc-js or proto-loader is on the
// client side, so a wire-format or HTTP/2 quirk that only our own client tolerates shows up here.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Certificate } from '../../src/pki/index.js';
import { defaultSigner, type ClosableSigner } from '../../src/server/index.js';
import { SERVER_NAME, loopbackConfig, startPlane, tempDir, writeBootstrapTokens, type Plane } from './fixtures.js';
import { skipUnlessCi } from '../helpers/peers.js';

const run = promisify(execFile);

// Debian's interpreter, whatever python3 comes first on PATH (pyenv's does not see Debian's modules).
const PYTHON = '/usr/bin/python3';
const CLIENT = fileURLToPath(new URL('./python/istio_ca_client.py', import.meta.url));
const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
const PROTO_FILE = 'istio/v1/auth/ca.proto';

const TD = 'spiffe://cluster.local';
const IDENTITY = `${TD}/ns/vm/sa/python-client`;
const TOKEN = 'python-grpcio-token-0123456789abcdef';
const METADATA = { WorkloadName: 'py-vm-1', ClusterID: 'Kubernetes', WorkloadIP: ['10.0.0.7', '10.0.0.8'], replicas: 3, canary: true, nothing: null, labels: { app: 'py' } };

/** Why the test cannot run here, or null. Only a missing python3-grpcio/python3-protobuf skips it. */
async function pythonGrpcMissing(): Promise<string | null> {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing (install python3-grpcio python3-protobuf; scripts/test.sh does)`;
  try {
    await run(PYTHON, ['-c', 'import grpc, google.protobuf']);
    return null;
  } catch (err) {
    const msg = String((err as { stderr?: string }).stderr ?? err).trim().split('\n').pop();
    return `Debian's python3-grpcio/python3-protobuf cannot be imported by ${PYTHON} (${msg}); apt-get install -y python3-grpcio python3-protobuf protobuf-compiler (scripts/test.sh does)`;
  }
}

interface ClientAnswer {
  ok: boolean;
  cert_chain?: string[];
  key_pem?: string;
  grpc_version?: string;
  code?: string;
  details?: string;
}

let skipReason: string | null = null;
let plane: Plane;
let dir: string;
let descriptorSet: string;
/** What the registration authority received as `metadata` on each call (decoded by the server from the Python bytes). */
const seenMetadata: (Record<string, unknown> | undefined)[] = [];

before(async () => {
  skipReason = skipUnlessCi(await pythonGrpcMissing()) || null;
  if (skipReason) return;
  dir = tempDir('meshcert-python-grpc-');
  // The descriptor set is generated here, never committed. libprotobuf-dev provides google/protobuf/struct.proto.
  descriptorSet = join(dir, 'ca.protoset');
  try {
    await run('protoc', ['--include_imports', `--descriptor_set_out=${descriptorSet}`, `-I${PROTO_DIR}`, '-I/usr/include', PROTO_FILE]);
  } catch (err) {
    throw new Error(`protoc failed (apt-get install -y protobuf-compiler libprotobuf-dev): ${String((err as { stderr?: string }).stderr ?? err)}`);
  }
  const tokenFile = join(dir, 'tokens.yaml');
  writeBootstrapTokens(tokenFile, [{ name: 'python', token: TOKEN, identity: IDENTITY }]);
  plane = await startPlane(loopbackConfig({ auth: { bootstrapTokens: tokenFile } }), {
    dataDir: join(dir, 'data'),
    // The default registration authority, watched: what the server decoded from the Python client's Struct.
    createSigner: async (deps): Promise<ClosableSigner> => {
      const inner = await defaultSigner(deps);
      return {
        createCertificate: (req, ctx) => {
          seenMetadata.push(req.metadata);
          return inner.createCertificate(req, ctx);
        },
        close: () => inner.close?.(),
      };
    },
  });
});

after(async () => {
  await plane?.stop();
});

/** Runs the Python client (asynchronously: the server runs in this process and must keep serving). */
async function pythonCall(args: { token: string; serverName?: string; spiffeId?: string; validity?: number }): Promise<ClientAnswer> {
  const argv = [
    CLIENT,
    '--descriptor-set', descriptorSet,
    '--address', plane.cp.addresses.grpc!,
    '--root-cert', join(plane.dataDir, 'root-cert.pem'),
    '--server-name', args.serverName ?? SERVER_NAME,
    '--token', args.token,
    '--validity', String(args.validity ?? 1800),
    '--metadata', JSON.stringify(METADATA),
    ...(args.spiffeId ? ['--spiffe-id', args.spiffeId] : []),
  ];
  let stdout: string;
  try {
    ({ stdout } = await run(PYTHON, argv, { timeout: 30_000, env: { ...process.env, GRPC_VERBOSITY: 'ERROR' } }));
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    throw new Error(`the Python client failed (exit ${e.code}):\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
  return JSON.parse(stdout.trim().split('\n').pop()!) as ClientAnswer;
}

function sha256Hex(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

async function openssl(args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run('openssl', args);
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`openssl ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** Every check on a chain the Python client received; returns the leaf. */
async function checkChain(answer: ClientAnswer, label: string): Promise<Certificate> {
  assert.equal(answer.ok, true, `${label}: ${answer.code} ${answer.details}`);
  const chain = answer.cert_chain!;
  assert.ok(chain.length >= 2, `${label}: a chain of ${chain.length} elements`);
  const leaf = Certificate.parse(chain[0]!);
  // The identity is the token's.
  assert.deepEqual(leaf.spiffeIds, [IDENTITY], label);
  // The certified key is the one the Python side made.
  const leafKey = new X509Certificate(chain[0]!).publicKey.export({ type: 'spki', format: 'der' });
  const pyKey = createPublicKey(answer.key_pem!).export({ type: 'spki', format: 'der' });
  assert.ok(Buffer.from(leafKey).equals(Buffer.from(pyKey)), `${label}: the leaf certifies the key of the CSR`);
  // The last element is the trust bundle: every root of the CA, as root-cert.pem holds them.
  const bundle = Certificate.parseAll(chain[chain.length - 1]!).map((c) => c.fingerprint256);
  assert.deepEqual(bundle, Certificate.parseAll(readFileSync(join(plane.dataDir, 'root-cert.pem'))).map((c) => c.fingerprint256), `${label}: trust bundle`);
  assert.deepEqual(bundle, plane.cp.ca.roots.map((r) => r.fingerprint256));
  // OpenSSL accepts leaf + intermediates against the bundle.
  const leafFile = join(dir, `${label}-leaf.pem`);
  const bundleFile = join(dir, `${label}-bundle.pem`);
  const interFile = join(dir, `${label}-intermediates.pem`);
  writeFileSync(leafFile, chain[0]!.trim() + '\n');
  writeFileSync(bundleFile, chain[chain.length - 1]!.trim() + '\n');
  const intermediates = chain.slice(1, -1);
  const verifyArgs = ['verify', '-CAfile', bundleFile];
  if (intermediates.length > 0) {
    writeFileSync(interFile, intermediates.map((p) => p.trim()).join('\n') + '\n');
    verifyArgs.push('-untrusted', interFile);
  }
  const out = await openssl([...verifyArgs, leafFile]);
  assert.match(out, new RegExp(`${leafFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: OK`), out);
  // And the ledger holds exactly this certificate.
  const entry = await plane.cp.ledger.get(leaf.serial);
  assert.ok(entry, `${label}: serial ${leaf.serial} is in the ledger`);
  assert.equal(entry.fingerprint, sha256Hex(leaf.der), `${label}: ledger fingerprint`);
  assert.equal(entry.identity, IDENTITY);
  return leaf;
}

test('python3-grpcio (an independent gRPC implementation) gets a certificate over TLS with a bootstrap token', async (t) => {
  if (skipReason) {
    t.skip(skipReason);
    return;
  }
  const before = seenMetadata.length;
  // As istio-agent does: the SPIFFE ID as the CSR's URI SAN, istiod's service name as the TLS server name.
  const answer = await pythonCall({ token: TOKEN, spiffeId: IDENTITY, validity: 1800 });
  const leaf = await checkChain(answer, 'agent-like');
  const life = leaf.notAfter.getTime() - Date.now();
  assert.ok(life > 1700_000 && life <= 1800_000, `validity_duration (int64) was read: lifetime ${life} ms`);
  t.diagnostic(`python3-grpcio ${answer.grpc_version}: ${leaf.spiffeIds[0]} serial ${leaf.serial}, chain of ${answer.cert_chain!.length}`);
  // The Struct written by python3-protobuf decodes to the same JSON on the server.
  assert.equal(seenMetadata.length, before + 1);
  assert.deepEqual(seenMetadata[before], METADATA);

  // A CSR without SANs (the identity comes from the credential) and "localhost" as the server name.
  const bare = await pythonCall({ token: TOKEN, serverName: 'localhost' });
  const bareLeaf = await checkChain(bare, 'no-san');
  assert.notEqual(bareLeaf.serial, leaf.serial);
});

test('python3-grpcio with a bad bootstrap token gets UNAUTHENTICATED', async (t) => {
  if (skipReason) {
    t.skip(skipReason);
    return;
  }
  const answer = await pythonCall({ token: 'not-a-known-token-0123456789', spiffeId: IDENTITY });
  assert.equal(answer.ok, false, JSON.stringify(answer).slice(0, 300));
  assert.equal(answer.code, 'UNAUTHENTICATED', answer.details);
  assert.match(answer.details ?? '', /bootstrap token/, answer.details);
  // A refusal for another identity, too: PERMISSION_DENIED reaches the C core client by name.
  const other = await pythonCall({ token: TOKEN, spiffeId: `${TD}/ns/kube-system/sa/admin` });
  assert.equal(other.code, 'PERMISSION_DENIED', JSON.stringify(other).slice(0, 300));
});
