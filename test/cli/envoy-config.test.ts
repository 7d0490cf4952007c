// `meshcert envoy-config`: the printed Envoy bootstrap decodes as envoy.config.bootstrap.v3.Bootstrap (Envoy's
// protos from @grpc/grpc-js-xds, unknown fields rejected, every typed_config resolved by its @type), and carries
// SDS names and stapling policies from the secrets folder. Needs `npm run build` (the CLI runs as a process).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { isMeshError } from '../../src/core/index.js';
import { meshcert } from '../helpers/cli.js';
import { tempDir } from '../helpers/test-ca.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { decodeEnvoyJson, ENVOY_PROTO_FILES, EnvoyProtoError } from '../envoy/envoy-proto.js';
import { sdsIncludeDirs } from '../../src/sds/index.js';
import { envoyConfigCommand } from '../../src/cli/commands/envoy-config.js';
import { gatewayPki, makeStaple, manifestYaml, tlsData } from '../sds/secret-fixtures.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const GATEWAY = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge }
spec:
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [app.example.test]
    tls: { mode: SIMPLE, credentialName: app-cred, minProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256] }
  - port: { number: 8443, name: mtls, protocol: HTTPS }
    hosts: [pay.example.test]
    tls: { mode: MUTUAL, credentialName: pay-cred, subjectAltNames: [spiffe://cluster.local/ns/shop/sa/cart] }
  - port: { number: 8443, name: must, protocol: HTTPS }
    hosts: ["*.must.test"]
    tls: { mode: SIMPLE, credentialName: must-cred }
  - port: { number: 8443, name: db, protocol: TLS }
    hosts: [db.example.test]
    tls: { mode: PASSTHROUGH }
  - port: { number: 8080, name: http, protocol: HTTP }
    hosts: [app.example.test]
    tls: { httpsRedirect: true }
  - port: { number: 15443, name: mesh, protocol: HTTPS }
    hosts: ["*"]
    tls: { mode: ISTIO_MUTUAL }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: [app.example.test, pay.example.test, "*.must.test", "*"]
  gateways: [edge]
  http:
  - match: [{ uri: { prefix: /api }, headers: { x-env: { exact: prod } }, method: { exact: GET } }, { uri: { regex: "/re/[0-9]+" } }]
    rewrite: { uri: /v2, authority: backend.internal }
    timeout: 3s
    retries: { attempts: 2, perTryTimeout: 1s }
    headers: { request: { set: { x-a: b }, remove: [x-c] } }
    route:
    - { destination: { host: app-backend, port: { number: 8080 } }, weight: 90 }
    - { destination: { host: app-backend, port: { number: 8080 }, subset: canary }, weight: 10, headers: { response: { add: { x-canary: "1" } } } }
  - match: [{ uri: { exact: /secure }, ignoreUriCase: true, queryParams: { q: {} } }]
    route: [{ destination: { host: secure-backend, port: { number: 443 } } }]
  tls:
  - match: [{ sniHosts: [db.example.test] }]
    route: [{ destination: { host: db, port: { number: 5432 } } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: app-backend }
spec:
  host: app-backend
  trafficPolicy:
    connectionPool: { tcp: { maxConnections: 50, connectTimeout: 2s }, http: { idleTimeout: 30s, h2UpgradePolicy: UPGRADE } }
  subsets: [{ name: canary, trafficPolicy: { tls: { mode: ISTIO_MUTUAL } } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: secure-backend }
spec:
  host: secure-backend
  trafficPolicy: { tls: { mode: MUTUAL, credentialName: backend-client, sni: secure.internal } }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: pay-only }
spec:
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/cart", "cluster.local/ns/shop/*"], notNamespaces: [dev] } }]
    to: [{ operation: { paths: ["/pay*"], methods: [GET, POST], hosts: [pay.example.test] } }]
    when: [{ key: "request.headers[x-tenant]", values: [acme] }, { key: source.ip, notValues: [10.0.0.0/8] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }]
---
apiVersion: meshcert.dev/v1
kind: GatewayOptions
spec:
  upstreams: { app-backend: 127.0.0.1, secure-backend: "secure.internal:8443", db: "[::1]:5432" }
  ecdhCurves: [X25519, P-256]
  signatureAlgorithms: [ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256]
  ports: [{ port: 8443, ecdhCurves: [P-256], onlyVerifyLeafCertCrl: true }]
  limits: { maxConnections: 5000, maxHeaderSize: 32768 }
  accessLog: { format: json }
  admin: { listen: 127.0.0.1:15000 }
`;

let work: ReturnType<typeof tempDir>;
let gwFile: string;
let secretsDir: string;
/** The YAML run, made once in before() and read by several tests (each CLI start costs about a second of CPU). */
let printed: Awaited<ReturnType<typeof meshcert>>;

before(async () => {
  work = tempDir('envoy-config-');
  const app = await gatewayPki({ dnsName: 'app.example.test' });
  const pay = await gatewayPki({ dnsName: 'pay.example.test' });
  const must = await gatewayPki({ dnsName: 'www.must.test' });
  const appStaple = await makeStaple(app.ca, app.leaf.cert);
  const mustStaple = await makeStaple(must.ca, must.leaf.cert);
  gwFile = work.file('gateway.yaml', GATEWAY);
  secretsDir = join(work.dir, 'secrets');
  mkdirSync(secretsDir);
  writeFileSync(
    join(secretsDir, 'secrets.yaml'),
    manifestYaml(
      { name: 'app-cred', policy: 'PREFERRED', data: tlsData(app, { 'tls.ocsp-staple': appStaple, 'ca.crt': app.root.cert.pem }) },
      { name: 'pay-cred', data: tlsData(pay) },
      { name: 'pay-cred-cacert', type: 'Opaque', data: { 'ca.crt': pay.root.cert.pem } },
      { name: 'must-cred', policy: 'MANDATORY', data: tlsData(must, { 'tls.ocsp': mustStaple }) },
    ),
  );
  printed = await meshcert(['envoy-config', '-f', gwFile, '--secrets', secretsDir, '--sds-address', 'unix:/run/meshcert/sds.sock', '--workload-sds-address', 'unix:/run/agent/sds.sock']);
});

after(() => work?.cleanup());

const chainsOf = (b: Obj, port: number): Obj[] => b.static_resources.listeners.find((l: Obj) => l.address.socket_address.port_value === port).filter_chains;
const chainFor = (b: Obj, port: number, host: string): Obj => chainsOf(b, port).find((c) => c.filter_chain_match?.server_names?.includes(host))!;

test('the printed YAML decodes as an Envoy v3 Bootstrap, with SDS names and stapling policies from the secrets', async () => {
  const r = printed;
  assert.equal(r.status, 0, r.stderr);
  const b = parse(r.stdout) as Obj;
  const { decoded, bytes } = decodeEnvoyJson(b);
  assert.ok(bytes.length > 1000);
  assert.equal((decoded.static_resources as Obj).listeners.length, 3);

  const app = chainFor(b, 8443, 'app.example.test').transport_socket.typed_config;
  assert.equal(app['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
  assert.equal(app.ocsp_staple_policy, 'STRICT_STAPLING', 'PREFERRED → STRICT_STAPLING');
  assert.equal(app.common_tls_context.tls_certificate_sds_secret_configs[0].name, 'kubernetes://app-cred');
  assert.deepEqual(app.common_tls_context.tls_params, {
    tls_minimum_protocol_version: 'TLSv1_2',
    cipher_suites: ['ECDHE-ECDSA-AES128-GCM-SHA256'],
    ecdh_curves: ['P-256'],
    signature_algorithms: ['ecdsa_secp256r1_sha256', 'rsa_pss_rsae_sha256'],
  });
  assert.equal(app.require_client_certificate, undefined);

  const pay = chainFor(b, 8443, 'pay.example.test').transport_socket.typed_config;
  assert.equal(pay.ocsp_staple_policy, 'LENIENT_STAPLING', 'no annotation → OPTIONAL → LENIENT_STAPLING');
  assert.equal(pay.require_client_certificate, true);
  const cvc = pay.common_tls_context.combined_validation_context;
  assert.equal(cvc.validation_context_sds_secret_config.name, 'kubernetes://pay-cred-cacert');
  assert.equal(cvc.default_validation_context.only_verify_leaf_cert_crl, true);
  assert.deepEqual(cvc.default_validation_context.match_typed_subject_alt_names, [{ san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/shop/sa/cart' } }]);
  const payHcm = chainFor(b, 8443, 'pay.example.test').filters[0].typed_config;
  assert.equal(payHcm.forward_client_cert_details, 'SANITIZE_SET');
  assert.deepEqual(payHcm.http_filters.map((f: Obj) => f.name), ['envoy.filters.http.rbac', 'envoy.filters.http.rbac', 'envoy.filters.http.router']);
  assert.deepEqual(payHcm.http_filters.slice(0, 2).map((f: Obj) => f.typed_config.rules.action), ['DENY', 'ALLOW']);

  assert.equal(chainFor(b, 8443, '*.must.test').transport_socket.typed_config.ocsp_staple_policy, 'MUST_STAPLE', 'MANDATORY → MUST_STAPLE');
  const db = chainFor(b, 8443, 'db.example.test');
  assert.equal(db.transport_socket, undefined, 'PASSTHROUGH does not terminate TLS');
  assert.equal(db.filters[0].typed_config.cluster, 'outbound|5432||db');

  // ISTIO_MUTUAL: the workload identity and trust bundle over SDS, peers in the trust domain.
  const mesh = chainsOf(b, 15443)[0]!.transport_socket.typed_config.common_tls_context;
  assert.equal(mesh.tls_certificate_sds_secret_configs[0].name, 'default');
  assert.equal(mesh.combined_validation_context.validation_context_sds_secret_config.name, 'ROOTCA');
  assert.deepEqual(mesh.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].matcher, { prefix: 'spiffe://cluster.local/' });
  assert.equal(mesh.tls_certificate_sds_secret_configs[0].sds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name, 'meshcert-workload-sds');

  // Routes: rewrite, weights, redirect on the HTTP port.
  const vhosts = chainFor(b, 8443, 'app.example.test').filters[0].typed_config.route_config.virtual_hosts as Obj[];
  assert.deepEqual(vhosts.map((v) => v.domains[0]), ['app.example.test']);
  const route = vhosts[0]!.routes[0];
  assert.equal(route.match.prefix, '/api');
  assert.equal(route.route.prefix_rewrite, '/v2');
  assert.equal(route.route.host_rewrite_literal, 'backend.internal');
  assert.equal(route.route.timeout, '3s');
  // Istio's default retryOn, with retriable-status-codes meaning 503 as istiod writes it.
  assert.deepEqual(route.route.retry_policy, {
    num_retries: 2,
    retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
    retriable_status_codes: [503],
    per_try_timeout: '1s',
  });
  assert.deepEqual(route.route.weighted_clusters.clusters.map((c: Obj) => [c.name, c.weight]), [['outbound|8080||app-backend', 90], ['outbound|8080|canary|app-backend', 10]]);
  assert.equal(vhosts[0]!.routes[1].route.regex_rewrite.substitution, '/v2');
  const redirect = chainsOf(b, 8080)[0]!.filters[0].typed_config.route_config.virtual_hosts[0];
  assert.equal(redirect.require_tls, 'ALL');

  // Clusters: upstream addresses, DestinationRule TLS and pools, and the SDS cluster over the Unix socket, HTTP/2.
  const clusters = b.static_resources.clusters as Obj[];
  const byName = (n: string) => clusters.find((c) => c.name === n)!;
  assert.equal(byName('outbound|8080||app-backend').connect_timeout, '2s');
  assert.equal(byName('outbound|8080||app-backend').circuit_breakers.thresholds[0].max_connections, 50);
  assert.equal(byName('outbound|8080|canary|app-backend').transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name, 'default');
  const secure = byName('outbound|443||secure-backend');
  assert.equal(secure.type, 'STRICT_DNS');
  assert.equal(secure.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value, 8443);
  assert.equal(secure.transport_socket.typed_config.sni, 'secure.internal');
  assert.equal(secure.transport_socket.typed_config.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name, 'kubernetes://backend-client-cacert');
  const sds = byName('meshcert-sds');
  assert.equal(sds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path, '/run/meshcert/sds.sock');
  assert.deepEqual(sds.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config, { http2_protocol_options: {} });
  assert.equal(byName('meshcert-workload-sds').load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path, '/run/agent/sds.sock');
  assert.equal(b.admin.address.socket_address.port_value, 15000);
  assert.match(r.stderr, /credential backend-client is not in the secrets folder/);
});

test('SDS over TCP with TLS: the SDS cluster verifies meshcert with the given CA and presents a client certificate', async () => {
  const ca = work.file('sds-ca.pem', 'placeholder: only the path goes into the bootstrap');
  const r = await meshcert(['envoy-config', '-f', gwFile, '--secrets', secretsDir, '--sds-address', 'localhost:15011', '--sds-ca', ca, '--sds-cert', '/etc/envoy/sds.pem', '--sds-key', '/etc/envoy/sds-key.pem', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const b = JSON.parse(r.stdout) as Obj;
  decodeEnvoyJson(b);
  const sds = (b.static_resources.clusters as Obj[]).find((c) => c.name === 'meshcert-sds')!;
  assert.equal(sds.type, 'STRICT_DNS');
  const tls = sds.transport_socket.typed_config;
  assert.equal(tls['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
  assert.equal(tls.sni, 'localhost');
  assert.equal(tls.common_tls_context.validation_context.trusted_ca.filename, ca);
  assert.equal(tls.common_tls_context.tls_certificates[0].private_key.filename, '/etc/envoy/sds-key.pem');
  assert.doesNotMatch(r.stdout, /PRIVATE KEY/);
});

test('the decoder rejects what Envoy would: unknown fields, unknown @type, bad enums, two oneof members', () => {
  assert.throws(() => decodeEnvoyJson({ static_resources: { listeners: [{ name: 'l', colour: 'red' }] } }), (e: unknown) => e instanceof EnvoyProtoError && /static_resources\.listeners\[0\]\.colour: unknown field/.test(e.message));
  assert.throws(() => decodeEnvoyJson({ static_resources: { listeners: [{ name: 'l', listener_filters: [{ name: 'x', typed_config: { '@type': 'type.googleapis.com/envoy.Nope' } }] }] } }), /envoy\.Nope is not a message of the loaded proto set/);
  assert.throws(() => decodeEnvoyJson({ static_resources: { clusters: [{ name: 'c', type: 'MAGIC' }] } }), /"MAGIC" is not a value of enum/);
  assert.throws(() => decodeEnvoyJson({ static_resources: { clusters: [{ name: 'c', type: 'STATIC', cluster_type: { name: 'x' } }] } }), /oneof cluster_discovery_type/);
  assert.throws(() => decodeEnvoyJson({ static_resources: { clusters: [{ name: 'c', connect_timeout: '5 seconds' }] } }), /expected a duration/);
});

test('errors: a missing credential (exit 1, nothing printed), an invalid gateway file, TCP SDS without a CA', async () => {
  const missing = work.file('missing.yaml', GATEWAY.replace('credentialName: app-cred', 'credentialName: nowhere'));
  const a = await meshcert(['envoy-config', '-f', missing, '--secrets', secretsDir]);
  assert.equal(a.status, 1);
  assert.match(a.stderr, /Gateway edge spec\.servers\[0\]\.tls\.credentialName: secret nowhere is not in the secrets folder/);
  assert.match(a.stderr, /MESH_ERR_CONFIG/);
  assert.equal(a.stdout, '');

  // The same command in-process (a CLI start costs a second of CPU on a busy machine).
  const run = (args: string[]) => envoyConfigCommand().exitOverride().parseAsync(args, { from: 'user' });
  const bad = work.file('bad.yaml', GATEWAY.replace('minProtocolVersion: TLSV1_2', 'minProtocolVersion: TLSV9'));
  await assert.rejects(run(['-f', bad, '--secrets', secretsDir]), (e: unknown) =>
    isMeshError(e, 'MESH_ERR_CONFIG') && /document 1 \(Gateway edge\): spec\.servers\[0\]\.tls\.minProtocolVersion: expected TLS_AUTO/.test(e.message));
  // MUTUAL without CA certificates (no ca.crt in pay-cred, no pay-cred-cacert secret).
  const noCaDir = join(work.dir, 'secrets-no-ca');
  mkdirSync(noCaDir);
  const all = readFileSync(join(secretsDir, 'secrets.yaml'), 'utf8').split('---\n');
  writeFileSync(join(noCaDir, 'secrets.yaml'), all.filter((d) => !d.includes('name: pay-cred-cacert')).join('---\n'));
  await assert.rejects(run(['-f', gwFile, '--secrets', noCaDir]), (e: unknown) =>
    isMeshError(e, 'MESH_ERR_CONFIG') && /servers\[1\]\.tls\.credentialName: MUTUAL needs CA certificates: ca\.crt in secret pay-cred, or a secret pay-cred-cacert/.test(e.message));
  await assert.rejects(run(['-f', gwFile, '--secrets', secretsDir, '--sds-address', '127.0.0.1:15011']), (e: unknown) => isMeshError(e, 'MESH_ERR_USAGE') && /--sds-ca/.test(e.message));
  await assert.rejects(run(['-f', gwFile, '--secrets', secretsDir, '--sds-address', 'nowhere']), (e: unknown) => isMeshError(e, 'MESH_ERR_USAGE') && /not unix:PATH or HOST:PORT/.test(e.message));
  await assert.rejects(run(['-f', gwFile, '--secrets', join(work.dir, 'none')]), (e: unknown) => isMeshError(e, 'MESH_ERR_FILE_READ'));
});

test('--policy sets the stapling policy of a secret, over its annotation (as serve\'s sds.ocspPolicies)', async () => {
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => ((out += String(chunk)), true)) as typeof process.stdout.write;
  try {
    await envoyConfigCommand().exitOverride().parseAsync(['-f', gwFile, '--secrets', secretsDir, '--policy', 'pay-cred=preferred', '--json'], { from: 'user' });
  } finally {
    process.stdout.write = write;
  }
  const b = JSON.parse(out) as Obj;
  decodeEnvoyJson(b);
  assert.equal(chainFor(b, 8443, 'pay.example.test').transport_socket.typed_config.ocsp_staple_policy, 'STRICT_STAPLING');
  await assert.rejects(envoyConfigCommand().exitOverride().parseAsync(['-f', gwFile, '--secrets', secretsDir, '--policy', 'pay-cred=SOMETIMES'], { from: 'user' }), /not a stapling policy/);
});

test('--help names the options and the stapling mapping', () => {
  let help = '';
  const cmd = envoyConfigCommand().configureOutput({ writeOut: (s) => (help += s) });
  cmd.outputHelp();
  for (const opt of ['-f, --file', '--secrets', '--sds-address', '--sds-ca', '--sds-cert', '--sds-key', '--json']) assert.ok(help.includes(opt), opt);
  assert.match(help, /MANDATORY -> MUST_STAPLE/);
});

const PYTHON = '/usr/bin/python3';
function pythonMissing(): string | false {
  const py = spawnSync(PYTHON, ['-c', 'import google.protobuf.json_format'], { encoding: 'utf8' });
  if (py.error || py.status !== 0) return 'needs Debian python3-protobuf (apt-get install -y python3-protobuf)';
  const protoc = spawnSync('protoc', ['--version'], { encoding: 'utf8' });
  if (protoc.error || protoc.status !== 0) return 'needs protoc (apt-get install -y protobuf-compiler)';
  if (!existsSync('/usr/include/google/protobuf/any.proto')) return "needs protobuf's well-known types (apt-get install -y libprotobuf-dev)";
  return false;
}

test('an independent decoder (python3-protobuf json_format, protoc descriptors) reads the bootstrap too', { skip: skipUnlessCi(pythonMissing()) }, async () => {
  // The protoc-gen-validate copy shipped beside Envoy's protos predates StringRules.ignore_empty, which protoc (unlike
  // protobufjs) needs to parse Envoy's options: a patched copy of validate.proto goes first on the include path.
  const [envoyApi, xds, googleapis, pgv] = sdsIncludeDirs() as [string, string, string, string];
  const patched = join(work.dir, 'pgv', 'validate');
  mkdirSync(patched, { recursive: true });
  const validate = readFileSync(join(pgv, 'validate', 'validate.proto'), 'utf8');
  writeFileSync(
    join(patched, 'validate.proto'),
    validate.includes('ignore_empty') ? validate : validate.replace(/message StringRules \{/, 'message StringRules {\n    optional bool ignore_empty = 26;'),
  );
  const descriptorSet = join(work.dir, 'bootstrap.pb');
  const pc = spawnSync(
    'protoc',
    [`-I${envoyApi}`, `-I${xds}`, `-I${googleapis}`, `-I${join(work.dir, 'pgv')}`, '-I/usr/include', '--include_imports', `--descriptor_set_out=${descriptorSet}`, ...ENVOY_PROTO_FILES],
    { encoding: 'utf8' },
  );
  assert.equal(pc.status, 0, pc.stderr);
  const script = fileURLToPath(new URL('../envoy/bootstrap_decode.py', import.meta.url));
  assert.equal(printed.status, 0, printed.stderr);
  const json = JSON.stringify(parse(printed.stdout));
  const py = spawnSync(PYTHON, [script, '--descriptor-set', descriptorSet], { input: json, encoding: 'utf8' });
  assert.equal(py.status, 0, `${py.stdout}${py.stderr}`);
  const out = JSON.parse(py.stdout) as { ok: boolean; listeners: number; clusters: number };
  assert.deepEqual([out.ok, out.listeners], [true, 3]);
  // And it refuses what Envoy would refuse.
  const broken = JSON.stringify({ ...JSON.parse(json), statsFlushInterval: 'soon' });
  const bad = spawnSync(PYTHON, [script, '--descriptor-set', descriptorSet], { input: broken, encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stdout, /"ok": false/);
});
