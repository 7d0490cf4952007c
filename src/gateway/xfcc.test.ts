import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { TestCA, tempDir } from '../../test/helpers/test-ca.js';
import { skipUnlessCi } from '../../test/helpers/peers.js';
import { openssl } from '../../test/helpers/tools.js';
import { rfc2253Subject, xfccValue } from './xfcc.js';

// Envoy's x-forwarded-client-cert value: field order By, Hash, Subject, URI, DNS; the subject printed as OpenSSL's
// `-nameopt RFC2253` (what Envoy uses), escapes included.

describe('xfcc', () => {
  it('formats Hash, Subject, every URI and DNS SAN in Envoy order, By first', async () => {
    const ca = await TestCA.root();
    const leaf = await ca.issue({
      subject: [
        ['C', 'DE'],
        ['O', 'Example, Inc.'],
        ['OU', 'a+b'],
        ['CN', 'Zoë <test>; #1 '],
      ],
      sans: [
        { type: 'uri', value: 'spiffe://cluster.local/ns/a/sa/b' },
        { type: 'dns', value: 'one.example.test' },
        { type: 'dns', value: 'two.example.test' },
      ],
    });
    const hash = createHash('sha256').update(leaf.cert.der).digest('hex');
    const subject = rfc2253Subject(leaf.cert);
    assert.equal(
      xfccValue(leaf.cert, ['spiffe://cluster.local/ns/istio-system/sa/gw']),
      `By=spiffe://cluster.local/ns/istio-system/sa/gw;Hash=${hash};Subject="${subject}";URI=spiffe://cluster.local/ns/a/sa/b;DNS=one.example.test;DNS=two.example.test`,
    );
    // As `openssl x509 -noout -subject -nameopt RFC2253` prints it (checked by hand and in the next test).
    assert.equal(subject, 'CN=Zo\\C3\\AB \\<test\\>\\; #1\\ ,OU=a\\+b,O=Example\\, Inc.,C=DE');
  });

  it('matches `openssl x509 -subject -nameopt RFC2253` and keeps an empty URI= when there is none', async (t) => {
    const ca = await TestCA.root();
    const leaf = await ca.issueServer(['only-dns.example.test'], { subject: [['O', 'meshcert tests'], ['OU', 'x,y+z'], ['CN', ' é; <only-dns> ']] });
    assert.match(xfccValue(leaf.cert), /;URI=;DNS=only-dns\.example\.test$/);
    const reason = skipUnlessCi(openssl(['version']).status !== 0 && 'openssl is not installed');
    if (reason) return t.skip(reason);
    const dir = tempDir();
    try {
      const out = openssl(['x509', '-in', dir.file('leaf.pem', leaf.cert.pem), '-noout', '-subject', '-nameopt', 'RFC2253']);
      assert.equal(out.status, 0, out.stderr);
      assert.equal(rfc2253Subject(leaf.cert), out.stdout.trim().replace(/^subject=\s*/, ''));
    } finally {
      dir.cleanup();
    }
  });
});
