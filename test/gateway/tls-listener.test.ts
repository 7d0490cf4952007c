// The listener on one port: SNI picks the server, each server has its own TLS versions, ciphers, curves and
// signature algorithms (visible to openssl s_client), and bad input (garbage, stalls, unknown SNI) is refused
// with a reason while everyone else is served.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { tempDir } from '../helpers/test-ca.js';
import { skipUnlessCi } from '../helpers/peers.js';
import { gatewayPki, manifestYaml, tlsData, type GatewayPki } from '../sds/secret-fixtures.js';
import { httpsGet, rawExchange, sClient, serverPlan, startListener, type ListenerHarness } from './tls-harness.js';
import { run } from '../helpers/tools.js';

const hasOpenssl = run('sh', ['-c', 'command -v openssl']).status === 0;
const skip = skipUnlessCi(!hasOpenssl && 'openssl is not installed');

let tmp: ReturnType<typeof tempDir>;
let a: GatewayPki;
let b: GatewayPki;
let h: ListenerHarness;

before(async () => {
  tmp = tempDir('gw-listener-');
  a = await gatewayPki({ dnsName: 'a.example.test' });
  b = await gatewayPki({ dnsName: 'b.example.test' });
  writeFileSync(join(tmp.dir, 'secrets.yaml'), manifestYaml({ name: 'a-cred', data: tlsData(a) }, { name: 'b-cred', data: tlsData(b) }));
  h = await startListener(tmp.dir, [
    // a: TLS 1.3 only, P-384 only, ECDSA P-256 SHA-256 signatures.
    serverPlan({ id: 'edge/a', hosts: ['a.example.test'], mode: 'SIMPLE', credentialName: 'a-cred', tls: { minProtocolVersion: 'TLSV1_3', ecdhCurves: ['P-384'] } }),
    // b (also the wildcard): TLS 1.2 only with one cipher suite.
    serverPlan({
      id: 'edge/b',
      hosts: ['*.example.test'],
      mode: 'SIMPLE',
      credentialName: 'b-cred',
      tls: { minProtocolVersion: 'TLSV1_2', maxProtocolVersion: 'TLSV1_2', cipherSuites: ['ECDHE-ECDSA-AES128-GCM-SHA256'], signatureAlgorithms: ['ecdsa_secp256r1_sha256'] },
    }),
  ], { handshakeTimeoutMs: 800 });
});

after(async () => {
  await h?.close();
  tmp?.cleanup();
});

describe('SNI selects the server and its certificate', () => {
  test('exact host, wildcard host, and the default without SNI', async () => {
    const ra = await httpsGet(h.port, { servername: 'a.example.test' });
    assert.match(ra.body, /server=a\.example\.test .*tls=TLSv1\.3/);
    assert.equal(ra.socket.getPeerX509Certificate()?.serialNumber.toLowerCase().replace(/^0+/, ''), a.leaf.cert.serial.toLowerCase().replace(/^0+/, ''));
    const rb = await httpsGet(h.port, { servername: 'other.example.test' });
    assert.match(rb.body, /server=\*\.example\.test sni=other\.example\.test tls=TLSv1\.2/);
    const none = await httpsGet(h.port, {});
    assert.match(none.body, /server=a\.example\.test/, 'no SNI: the first server of the port');
  });

  test('an SNI no server owns is refused with unrecognized_name', async () => {
    await assert.rejects(httpsGet(h.port, { servername: 'nobody.elsewhere.test' }), /unrecognized name|alert number 112|ECONNRESET/i);
    assert.match(await h.metricsText(), /meshcert_gateway_handshake_failures_total\{port="8443",reason="no_server"\} 1/);
  });
});

describe('per-server TLS settings on one port (openssl s_client)', { skip }, () => {
  test('TLS 1.2: refused by a (TLS 1.3 only), accepted by b', async () => {
    const ra = await sClient(h.port, ['-servername', 'a.example.test', '-tls1_2']);
    assert.notEqual(ra.status, 0, ra.stdout);
    assert.match(ra.stderr + ra.stdout, /alert protocol version|unsupported protocol|no protocols available/i);
    const rb = await sClient(h.port, ['-servername', 'b.example.test', '-tls1_2']);
    assert.match(rb.stdout, /Protocol\s*: TLSv1\.2/);
    assert.match(rb.stdout, /server=\*\.example\.test/);
  });

  test('TLS 1.3: accepted by a, refused by b (max TLS 1.2 is fine, it negotiates 1.2: so force 1.3)', async () => {
    const ra = await sClient(h.port, ['-servername', 'a.example.test', '-tls1_3', '-groups', 'P-384']);
    assert.match(ra.stdout, /Protocol\s*: TLSv1\.3/);
    const rb = await sClient(h.port, ['-servername', 'b.example.test', '-tls1_3']);
    assert.notEqual(rb.status, 0);
  });

  test('curves: P-256 only is refused by a (P-384 only), accepted by b', async () => {
    const ra = await sClient(h.port, ['-servername', 'a.example.test', '-groups', 'P-256']);
    assert.notEqual(ra.status, 0, ra.stdout);
    assert.match(ra.stderr + ra.stdout, /handshake failure|no suitable key share|alert/i);
    const rb = await sClient(h.port, ['-servername', 'b.example.test', '-groups', 'P-256']);
    assert.match(rb.stdout, /Server Temp Key: ECDH, prime256v1|Server Temp Key: ECDH, P-256/);
  });

  test('ciphers: a TLS 1.2 suite b does not allow is refused; the allowed one works', async () => {
    const bad = await sClient(h.port, ['-servername', 'b.example.test', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr + bad.stdout, /handshake failure|no shared cipher/i);
    const good = await sClient(h.port, ['-servername', 'b.example.test', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']);
    assert.match(good.stdout, /Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/);
  });

  test('signature algorithms: b allows only ecdsa_secp256r1_sha256, so a client offering only SHA-384 fails there', async () => {
    const bad = await sClient(h.port, ['-servername', 'b.example.test', '-tls1_2', '-sigalgs', 'ECDSA+SHA384']);
    assert.notEqual(bad.status, 0);
    const good = await sClient(h.port, ['-servername', 'b.example.test', '-tls1_2', '-sigalgs', 'ECDSA+SHA256']);
    assert.match(good.stdout, /Peer signature type: ECDSA|Peer signing digest: SHA256/);
    // a has no sigalgs restriction: SHA-384 is fine there.
    const other = await sClient(h.port, ['-servername', 'a.example.test', '-groups', 'P-384', '-sigalgs', 'ECDSA+SHA384:ECDSA+SHA256']);
    assert.match(other.stdout, /Protocol\s*: TLSv1\.3/);
  });
});

describe('bad input', () => {
  test('garbage instead of a ClientHello is closed, counted, and the port keeps serving', async () => {
    const r = await rawExchange(h.port, Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    assert.equal(r.closed, true);
    const r2 = await rawExchange(h.port, Buffer.from([22, 3, 1, 0, 10, 1, 0, 0, 6, 3, 3, 0, 0, 0, 0]));
    assert.equal(r2.closed, true);
    assert.match(await h.metricsText(), /reason="client_hello"\} 2/);
    assert.match((await httpsGet(h.port, { servername: 'a.example.test' })).body, /server=a\.example\.test/);
  });

  test('a client that stalls before or inside the ClientHello is cut off at the handshake timeout', async () => {
    const silent = await rawExchange(h.port, null, 5000);
    assert.equal(silent.closed, true, 'closed by the gateway, not by the test');
    const half = await rawExchange(h.port, Buffer.from([22, 3, 1, 2, 0, 1, 0, 1, 252, 3, 3]), 5000);
    assert.equal(half.closed, true);
    assert.match(await h.metricsText(), /reason="client_hello_timeout"\} 2/);
  });

  test('a client that sends a whole ClientHello and then stalls is cut at the handshake timeout', async () => {
    // A real client's hello, captured by a plain TCP server, replayed without the rest of the handshake.
    const hello = await new Promise<Buffer>((resolve) => {
      const cap = createServer((s) => s.once('data', (d: Buffer) => { resolve(d); s.destroy(); cap.close(); }));
      cap.listen(0, '127.0.0.1', () => {
        const c = tlsConnect({ host: '127.0.0.1', port: (cap.address() as { port: number }).port, servername: 'a.example.test', rejectUnauthorized: false });
        c.on('error', () => undefined);
      });
    });
    const r = await rawExchange(h.port, hello, 5000);
    assert.equal(r.closed, true);
    assert.equal(r.data[0], 22, 'the gateway answered with its handshake flight first');
    assert.match(await h.metricsText(), /reason="handshake_timeout"\} 1/);
  });
});
