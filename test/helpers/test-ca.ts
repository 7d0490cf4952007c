import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import {
  Certificate,
  exportPrivateKeyPem,
  generateKeyPair,
  genericCertificateBuilder,
  issuerOf,
  randomSerial,
  toSigningKey,
  type CertificateSpec,
  type KeyType,
  type SigningKey,
} from '../../src/pki/index.js';

const DAY = 86_400_000;

export interface IssuedLeaf {
  cert: Certificate;
  privateKey: KeyObject;
  keyPem: string;
  /** Leaf then intermediates up to (not including) the root. */
  chain: Certificate[];
  chainPem: string;
}

/**
 * A CA made at run time for tests: `const root = await TestCA.root(); const int = await root.child();
 * const svid = await int.issueSvid('spiffe://cluster.local/ns/a/sa/b')`. Nothing is read from disk.
 */
export class TestCA {
  private constructor(
    readonly cert: Certificate,
    readonly signer: SigningKey,
    readonly parent: TestCA | null,
  ) {}

  static async root(options: { name?: string; keyType?: KeyType; notBefore?: Date; notAfter?: Date; pathLen?: number } = {}): Promise<TestCA> {
    const keys = generateKeyPair(options.keyType ?? 'ec-p256');
    const signer = await toSigningKey(keys.privateKey);
    const now = Date.now();
    const der = await genericCertificateBuilder.build(
      {
        serial: randomSerial(),
        subject: `O=meshcert tests, CN=${options.name ?? 'test root'}`,
        notBefore: options.notBefore ?? new Date(now - DAY),
        notAfter: options.notAfter ?? new Date(now + 365 * DAY),
        publicKey: keys.publicKey,
        basicConstraints: { ca: true, pathLen: options.pathLen ?? null },
        keyUsage: ['keyCertSign', 'cRLSign', 'digitalSignature'],
      },
      'self',
      signer,
    );
    return new TestCA(Certificate.fromDer(der), signer, null);
  }

  /** The root of this CA's chain. */
  get rootCA(): TestCA {
    return this.parent ? this.parent.rootCA : this;
  }

  /** This CA and its parents up to (not including) the root: the chain a leaf presents after itself. */
  get intermediates(): Certificate[] {
    return this.parent ? [this.cert, ...this.parent.intermediates] : [];
  }

  async child(options: { name?: string; keyType?: KeyType; pathLen?: number; spec?: Partial<CertificateSpec> } = {}): Promise<TestCA> {
    const keys = generateKeyPair(options.keyType ?? 'ec-p256');
    const signer = await toSigningKey(keys.privateKey);
    const now = Date.now();
    const der = await genericCertificateBuilder.build(
      {
        serial: randomSerial(),
        subject: `O=meshcert tests, CN=${options.name ?? 'test intermediate'}`,
        notBefore: new Date(now - DAY),
        notAfter: new Date(now + 180 * DAY),
        publicKey: keys.publicKey,
        basicConstraints: { ca: true, pathLen: options.pathLen ?? null },
        keyUsage: ['keyCertSign', 'cRLSign', 'digitalSignature'],
        ...options.spec,
      },
      issuerOf(this.cert),
      this.signer,
    );
    return new TestCA(Certificate.fromDer(der), signer, this);
  }

  /** Issues any certificate from a partial spec (defaults: EC P-256 key, valid from a minute ago for a day). */
  async issue(spec: Partial<CertificateSpec> = {}, keyType: KeyType = 'ec-p256'): Promise<IssuedLeaf> {
    const keys = spec.publicKey ? { privateKey: undefined as unknown as KeyObject, publicKey: spec.publicKey } : generateKeyPair(keyType);
    const now = Date.now();
    const der = await genericCertificateBuilder.build(
      {
        serial: randomSerial(),
        subject: [],
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + DAY),
        basicConstraints: { ca: false },
        keyUsage: ['digitalSignature'],
        ...spec,
        publicKey: keys.publicKey,
      },
      issuerOf(this.cert),
      this.signer,
    );
    const cert = Certificate.fromDer(der);
    const chain = [cert, ...this.intermediates];
    return {
      cert,
      privateKey: keys.privateKey,
      keyPem: keys.privateKey ? exportPrivateKeyPem(keys.privateKey) : '',
      chain,
      chainPem: chain.map((c) => c.pem).join(''),
    };
  }

  issueSvid(spiffeId: string, spec: Partial<CertificateSpec> = {}): Promise<IssuedLeaf> {
    return this.issue({
      sans: [{ type: 'uri', value: spiffeId }],
      sanCritical: true,
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extKeyUsage: ['serverAuth', 'clientAuth'],
      ...spec,
    });
  }

  issueServer(dnsNames: string[], spec: Partial<CertificateSpec> = {}): Promise<IssuedLeaf> {
    return this.issue({
      subject: `CN=${dnsNames[0] ?? 'server'}`,
      sans: dnsNames.map((value) => ({ type: 'dns' as const, value })),
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extKeyUsage: ['serverAuth'],
      ...spec,
    });
  }

  get keyPem(): string {
    return exportPrivateKeyPem(this.signer.privateKey);
  }
}

/** A temp folder removed by the returned cleanup; files for tools like openssl that read paths. */
export function tempDir(prefix = 'meshcert-test-'): { dir: string; file(name: string, content?: string | Uint8Array): string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    file(name, content) {
      const p = join(dir, name);
      if (content !== undefined) writeFileSync(p, content, { mode: 0o600 });
      return p;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
