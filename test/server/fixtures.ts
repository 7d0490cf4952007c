// Shared by the test/server suites: a real ControlPlane on 127.0.0.1 with ephemeral ports in a temp data dir, and
// clients for it (the agent's CA client, a raw grpc-js client, a bare TLS handshake, plain HTTP).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { X509Certificate, createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { requestCertificate, type CertificateRequestOptions } from '../../src/agent/index.js';
import { parseServeConfig, type ServeConfig } from '../../src/config/index.js';
import { isMeshError, type Logger } from '../../src/core/index.js';
import { buildCsr, exportPrivateKeyPem, generateKeyPair, toSigningKey, type CsrSpec, type KeyType } from '../../src/pki/index.js';
import { ControlPlane, type ControlPlaneOptions } from '../../src/server/index.js';

export const SERVER_NAME = 'istiod.istio-system.svc';
export const JWT_ISSUER = 'https://kubernetes.default.svc';
export const JWT_AUDIENCE = 'istio-ca';

export function tempDir(prefix = 'meshcert-server-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A config as a user writes it (YAML through the real parser), with ephemeral loopback ports by default. */
export function makeConfig(doc: Record<string, unknown>): ServeConfig {
  return parseServeConfig(stringify(doc), 'test config');
}

export interface Plane {
  cp: ControlPlane;
  dataDir: string;
  rootPem: string;
  stop(): Promise<void>;
}

export async function startPlane(doc: Record<string, unknown>, options: ControlPlaneOptions & { dataDir?: string } = {}): Promise<Plane> {
  const dataDir = options.dataDir ?? join(tempDir(), 'data');
  const cp = new ControlPlane();
  await cp.start(makeConfig(doc), dataDir, options);
  const rootPem = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
  return {
    cp,
    dataDir,
    rootPem,
    stop: async () => {
      await cp.stop();
      rmSync(join(dataDir, '..'), { recursive: true, force: true });
    },
  };
}

/** A fresh key and a CSR for it; the spec is what the CSR asks for (nothing by default, as the agent sends). */
export async function makeCsr(spec: CsrSpec = {}, keyType: KeyType = 'ec-p256'): Promise<{ csrPem: string; privateKey: KeyObject; keyPem: string }> {
  const keys = generateKeyPair(keyType);
  const csr = await buildCsr(spec, await toSigningKey(keys.privateKey));
  return { csrPem: csr.pem, privateKey: keys.privateKey, keyPem: exportPrivateKeyPem(keys.privateKey) };
}

export type CallOptions = Partial<Omit<CertificateRequestOptions, 'address' | 'rootCertPem'>>;

/** CreateCertificate through the agent's client (which is also under test). */
export async function call(plane: Plane, options: CallOptions = {}): Promise<{ certChain: string[]; keyPem: string }> {
  const csr = options.csrPem ? { csrPem: options.csrPem, keyPem: '' } : await makeCsr();
  const res = await requestCertificate({
    address: plane.cp.addresses.grpc!,
    rootCertPem: plane.rootPem,
    serverName: SERVER_NAME,
    validitySeconds: 3600,
    ...options,
    csrPem: csr.csrPem,
  });
  return { certChain: res.certChain, keyPem: csr.keyPem };
}

/** The gRPC status a call ends with: 0 on success, else the code the CA client kept in the MeshError. */
export async function statusOf(plane: Plane, options: CallOptions = {}): Promise<{ code: number; message: string; meshCode?: string }> {
  try {
    await call(plane, options);
    return { code: 0, message: 'OK' };
  } catch (err) {
    if (isMeshError(err) && typeof err.details?.grpcCode === 'number') return { code: err.details.grpcCode, message: err.message, meshCode: err.code };
    throw err;
  }
}

/** The certificate the gRPC port presents in a fresh TLS handshake (HTTP/2 ALPN, as a gRPC client dials). */
export function servedCertificate(address: string, rootPem: string, servername = SERVER_NAME, host?: string): Promise<{ cert: X509Certificate; peer: PeerCertificate }> {
  const [h, p] = splitHostPort(address);
  // SNI carries names only (RFC 6066): to check an IP SAN, dial the IP with no servername, as a client would.
  const target = isIP(servername) ? { host: servername } : { host: host ?? h, servername };
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ ...target, port: p, ca: rootPem, ALPNProtocols: ['h2'] }, () => {
      const cert = sock.getPeerX509Certificate();
      const peer = sock.getPeerCertificate();
      sock.destroy();
      if (!cert) reject(new Error('no peer certificate'));
      else resolve({ cert, peer });
    });
    sock.on('error', reject);
  });
}

export function splitHostPort(address: string): [string, number] {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!m) throw new Error(`bad address ${address}`);
  return [m[1]!, Number(m[2])];
}

export function httpGet(address: string, path: string, method = 'GET'): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const [host, port] = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port, path, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A JWT issuer for tests: an ES256 key whose public half is written where auth.jwt[].publicKeyFiles points. */
export class TestJwtIssuer {
  readonly privateKey: KeyObject;
  readonly publicKeyFile: string;

  /** `issuer` is the `iss` of its tokens; a second issuer in the same folder needs another `keyFile` name. */
  constructor(
    dir: string,
    readonly issuer = JWT_ISSUER,
    keyFile = 'sa.pub',
  ) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.privateKey = privateKey;
    this.publicKeyFile = join(dir, keyFile);
    writeFileSync(this.publicKeyFile, publicKey.export({ format: 'pem', type: 'spki' }));
  }

  get config(): Record<string, unknown> {
    return { issuer: this.issuer, audiences: [JWT_AUDIENCE], publicKeyFiles: [this.publicKeyFile] };
  }

  /** A Kubernetes service-account token for NS/SA; `exp` in seconds from now (negative: already expired). */
  token(ns: string, sa: string, options: { expInSeconds?: number; audience?: string; key?: KeyObject } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ 'kubernetes.io': { namespace: ns, serviceaccount: { name: sa } } })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer(this.issuer)
      .setAudience(options.audience ?? JWT_AUDIENCE)
      .setSubject(`system:serviceaccount:${ns}:${sa}`)
      .setIssuedAt(now - 5)
      .setExpirationTime(now + (options.expInSeconds ?? 600))
      .sign(options.key ?? this.privateKey);
  }
}

/** Writes a bootstrap token list with the tokens in clear (the authenticator hashes them). */
export function writeBootstrapTokens(file: string, tokens: { name: string; token: string; identity: string; oneTime?: boolean; expires?: string }[]): void {
  writeFileSync(file, stringify({ tokens }));
}

/** A loopback config with every section on and ephemeral ports. */
export function loopbackConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    trustDomain: 'cluster.local',
    grpc: { listen: '127.0.0.1:0', dnsNames: [SERVER_NAME, 'localhost'] },
    http: { listen: '127.0.0.1:0', publicUrl: 'http://127.0.0.1:15014' },
    ...extra,
  };
}

/** What an external tool printed. */
export interface ToolRun {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs an external tool (openssl, curl) without blocking: the server under test runs in this process, and a
 * synchronous spawn would stop it from answering the tool.
 */
export function runTool(cmd: string, args: string[]): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return reject(err);
      resolve({ status: err ? Number((err as { code: number }).code) : 0, stdout, stderr });
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * One serial recorded under every signing CA of a control plane: random 128-bit serials do not collide by chance,
 * so the ambiguous-serial cases write their twin ledger rows directly.
 */
export async function recordUnderEveryCa(cp: ControlPlane, serial: string, identity = 'twin.example'): Promise<void> {
  for (const d of cp.signingDomains) {
    await cp.ledger.record({
      serial,
      issuerKeyId: d.ca.cert.issuerKeyId,
      subject: '',
      sans: [`DNS:${identity}`],
      identity,
      profile: 'server',
      notBefore: new Date(Date.now() - 1000),
      notAfter: new Date(Date.now() + 3_600_000),
      fingerprint: createHash('sha256').update(serial + d.trustDomain).digest('hex'),
      pem: '',
    });
  }
}

/** Asserts a tool exited 0, showing its output otherwise; returns the run. */
export function ok<R extends { status: number | null; stdout: string; stderr: string }>(r: R, what: string): R {
  assert.equal(r.status, 0, `${what}:\n${r.stdout}${r.stderr}`);
  return r;
}

/** A pino logger whose lines the test can read. */
export function capturingLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void out.push(s) });
  return { logger, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}
