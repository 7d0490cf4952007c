import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { TestCA, tempDir, type IssuedLeaf } from '../../test/helpers/test-ca.js';
import { skipUnlessCi } from '../../test/helpers/peers.js';
import { run } from '../../test/helpers/tools.js';
import { readClientHello, scanClientHello, maxOfferedVersion, TlsVersions, type ClientHello } from './client-hello.js';

/** Captures the raw first flight of a client by accepting one TCP connection and never answering. */
async function captureHello(connect: (port: number) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((sock) => {
      const chunks: Buffer[] = [];
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        const all = Buffer.concat(chunks);
        if (scanClientHello(all).status !== 'incomplete') {
          sock.destroy();
          srv.close();
          resolve(all);
        }
      });
      sock.on('error', () => {});
    });
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => connect((srv.address() as net.AddressInfo).port));
  });
}

function nodeHello(options: tls.ConnectionOptions): Promise<Buffer> {
  return captureHello((port) => {
    const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...options });
    c.on('error', () => {});
  });
}

/** Re-frames one handshake message into records of at most `size` bytes each (as a client may legally do). */
function refragment(records: Buffer, size: number): Buffer {
  const body = records.subarray(5, 5 + records.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const part = body.subarray(i, i + size);
    const hdr = Buffer.from([22, 3, 1, 0, 0]);
    hdr.writeUInt16BE(part.length, 3);
    out.push(hdr, part);
  }
  return Buffer.concat(out);
}

function complete(buf: Buffer): ClientHello {
  const scan = scanClientHello(buf);
  assert.equal(scan.status, 'complete', JSON.stringify(scan));
  return (scan as { hello: ClientHello }).hello;
}

describe('ClientHello scanning', () => {
  it('reads SNI, ALPN, versions, groups, signature algorithms and status_request from a Node client', async () => {
    const raw = await nodeHello({
      servername: 'App.Example.TEST',
      ALPNProtocols: ['h2', 'http/1.1'],
      minVersion: 'TLSv1.2',
      ecdhCurve: 'X25519:P-256',
      sigalgs: 'ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256',
      // Accepted by tls.connect but missing from @types/node 20.
      ...({ requestOCSP: true } as tls.ConnectionOptions),
    });
    const hello = complete(raw);
    assert.equal(hello.serverName, 'app.example.test');
    assert.deepEqual(hello.alpnProtocols, ['h2', 'http/1.1']);
    assert.deepEqual(hello.supportedVersions, [TlsVersions.TLS1_3, TlsVersions.TLS1_2]);
    assert.equal(maxOfferedVersion(hello), TlsVersions.TLS1_3);
    assert.deepEqual(hello.supportedGroups, [0x001d, 0x0017]);
    assert.deepEqual(hello.signatureAlgorithms, [0x0403, 0x0804]);
    assert.equal(hello.statusRequest, true);
    assert.ok(hello.cipherSuites.includes(0x1301), 'TLS_AES_128_GCM_SHA256 offered');
  });

  it('reports no SNI and no ALPN when the client sends neither; a TLS 1.2-only client has no supported_versions', async () => {
    const hello = complete(await nodeHello({ maxVersion: 'TLSv1.2' }));
    assert.equal(hello.serverName, undefined);
    assert.deepEqual(hello.alpnProtocols, []);
    assert.equal(hello.statusRequest, false);
    assert.equal(maxOfferedVersion(hello), TlsVersions.TLS1_2);
  });

  it('is incomplete at every prefix, and complete for a hello split over many records', async () => {
    const raw = await nodeHello({ servername: 'split.test', ALPNProtocols: ['h2'] });
    for (let n = 0; n < raw.length; n++) assert.equal(scanClientHello(raw.subarray(0, n)).status, 'incomplete', `prefix ${n}`);
    const split = refragment(raw, 7);
    const scan = scanClientHello(split);
    assert.equal(scan.status, 'complete');
    assert.equal((scan as { length: number }).length, split.length);
    assert.equal((scan as { hello: ClientHello }).hello.serverName, 'split.test');
  });

  it('says what is wrong with garbage, plain HTTP, truncated vectors and oversized hellos', async () => {
    const http = scanClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(http.status, 'invalid');
    assert.equal((http as { notTls: boolean }).notTls, true);

    const raw = await nodeHello({ servername: 'x.test' });
    // Lie about the cipher-suite vector length: it now runs past the message.
    const bad = Buffer.from(raw);
    const csOffset = 5 + 4 + 2 + 32 + 1 + bad[5 + 4 + 2 + 32]!;
    bad.writeUInt16BE(0xfff0, csOffset);
    const scan = scanClientHello(bad);
    assert.equal(scan.status, 'invalid');
    assert.match((scan as { reason: string }).reason, /cipher_suites runs past the end/);

    const notHello = Buffer.from(raw);
    notHello[5] = 2; // ServerHello
    assert.match((scanClientHello(notHello) as { reason: string }).reason, /not ClientHello/);

    assert.match((scanClientHello(raw, 100) as { reason: string }).reason, /larger than 100 bytes/);
  });
});

describe('readClientHello on a live socket', () => {
  let leaf: IssuedLeaf;
  let root: TestCA;
  before(async () => {
    root = await TestCA.root();
    leaf = await root.issueServer(['app.example.test']);
  });

  /** A listener that reads the hello, then starts TLS on the same socket with settings chosen from it. */
  function inspectingServer(onHello: (hello: ClientHello) => void): Promise<{ port: number; close(): void; errors: Error[] }> {
    const errors: Error[] = [];
    const srv = net.createServer(async (sock) => {
      sock.on('error', () => {});
      try {
        const { hello } = await readClientHello(sock, { timeoutMs: 2000 });
        onHello(hello);
        const t = new tls.TLSSocket(sock, {
          isServer: true,
          key: leaf.keyPem,
          cert: leaf.chainPem,
          ALPNProtocols: hello.alpnProtocols.includes('h2') ? ['h2'] : ['http/1.1'],
        });
        t.on('secure', () => t.end(`hello ${hello.serverName}\n`));
        t.on('error', () => {});
      } catch (err) {
        errors.push(err as Error);
        sock.destroy();
      }
    });
    return new Promise((resolve) =>
      srv.listen(0, '127.0.0.1', () => resolve({ port: (srv.address() as net.AddressInfo).port, close: () => srv.close(), errors })),
    );
  }

  it('hands the socket to TLS with every byte intact: a Node client completes the handshake and reads data', async () => {
    const seen: ClientHello[] = [];
    const srv = await inspectingServer((h) => seen.push(h));
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const c = tls.connect({ port: srv.port, host: '127.0.0.1', servername: 'app.example.test', ca: root.cert.pem, ALPNProtocols: ['h2'] });
        let got = '';
        c.on('data', (d) => (got += d));
        c.on('end', () => resolve(got + ` alpn=${c.alpnProtocol}`));
        c.on('error', reject);
      });
      assert.equal(text, 'hello app.example.test\n alpn=h2');
      assert.equal(seen[0]?.serverName, 'app.example.test');
    } finally {
      srv.close();
    }
  });

  it('works with openssl s_client, whose hello arrives as OpenSSL frames it', async (t) => {
    const skip = skipUnlessCi(run('openssl', ['version']).status !== 0 && 'openssl is not installed');
    if (skip) return t.skip(skip);
    const seen: ClientHello[] = [];
    const srv = await inspectingServer((h) => seen.push(h));
    const dir = tempDir();
    try {
      const caFile = dir.file('ca.pem', root.cert.pem);
      const out = await new Promise<string>((resolve) => {
        const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${srv.port}`, '-servername', 'app.example.test', '-CAfile', caFile, '-verify_return_error', '-alpn', 'http/1.1', '-status'], { stdio: ['pipe', 'pipe', 'pipe'] });
        let text = '';
        p.stdout.on('data', (d) => (text += d));
        p.stderr.on('data', (d) => (text += d));
        p.on('close', () => resolve(text));
        setTimeout(() => p.stdin.end(), 500);
      });
      assert.match(out, /Verify return code: 0 \(ok\)/);
      assert.match(out, /ALPN protocol: http\/1.1/);
      assert.match(out, /hello app.example.test/);
      assert.equal(seen[0]?.statusRequest, true);
    } finally {
      srv.close();
      dir.cleanup();
    }
  });

  it('rejects garbage, a stalled client and an early close with typed errors, leaving the caller the socket', async () => {
    const srv = await inspectingServer(() => {});
    try {
      const send = (bytes: Buffer | null, endAfter: boolean): Promise<void> =>
        new Promise((resolve) => {
          const c = net.connect(srv.port, '127.0.0.1', () => {
            if (bytes) c.write(bytes);
            if (endAfter) c.end();
          });
          c.on('close', () => resolve());
          c.on('error', () => resolve());
        });
      await send(Buffer.from('GET / HTTP/1.1\r\n\r\n'), false);
      await send(Buffer.from([22, 3, 1, 0, 200, 1, 0]), true);
      assert.equal(srv.errors.length, 2);
      assert.equal((srv.errors[0] as { code?: string }).code, 'MESH_ERR_CLIENT_HELLO');
      assert.match(srv.errors[0]!.message, /not a TLS handshake record/);
      assert.match(srv.errors[1]!.message, /connection closed after 7 bytes/);
    } finally {
      srv.close();
    }
    // A client that says nothing: the read times out.
    const quiet = net.createServer();
    await new Promise<void>((r) => quiet.listen(0, '127.0.0.1', () => r()));
    const port = (quiet.address() as net.AddressInfo).port;
    const client = net.connect(port, '127.0.0.1');
    client.on('error', () => {});
    const [sock] = (await new Promise((r) => quiet.once('connection', (s) => r([s])))) as [net.Socket];
    await assert.rejects(readClientHello(sock, { timeoutMs: 50 }), (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'MESH_ERR_CLIENT_HELLO_TIMEOUT');
      assert.match(err.message, /within 50 ms \(0 bytes received\)/);
      return true;
    });
    sock.destroy();
    client.destroy();
    quiet.close();
  });
});
