import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { buildOcspErrorResponse, buildOcspResponse, certIdFor } from '../pki/index.js';
import { HOUR, MIN, gatewayPki, makeCrl, makeStaple, otherLeaf, type GatewayPki } from '../../test/sds/secret-fixtures.js';
import { SECRET_TYPE_URL, decodeSecretResource, secretResource, sdsProtos, type SecretMessage } from './index.js';

let pki: GatewayPki;
let mustStaple: GatewayPki;
before(async () => {
  pki = await gatewayPki();
  mustStaple = await gatewayPki({ mustStaple: true });
});

/** Through the real encoder and decoder, as a client receives it. */
function wire(message: SecretMessage): SecretMessage {
  const m = sdsProtos().stream;
  const buf = m.responseSerialize({ versionInfo: 'v', resources: [message as SecretMessage & { '@type': string }], typeUrl: SECRET_TYPE_URL, nonce: 'n' });
  return m.responseDeserialize(buf).resources![0] as SecretMessage;
}

function errorsOf(message: SecretMessage): string {
  const d = decodeSecretResource(wire(message));
  assert.equal(d.valid, false, 'expected the resource to be refused');
  return d.valid ? '' : d.errors.join('\n');
}

describe('our secret → Envoy Secret and back', () => {
  test('tls_certificate: chain and key as inline bytes, staple as inline bytes; the digest survives the wire', async () => {
    const staple = await makeStaple(pki.ca, pki.leaf.cert);
    const res = secretResource('kubernetes://gw', { kind: 'tlsCertificate', certificateChain: pki.leaf.chainPem, privateKey: pki.leaf.keyPem, ocspStaple: staple });
    const got = wire(res.message);
    assert.equal(got['@type'], SECRET_TYPE_URL);
    assert.equal(got.name, 'kubernetes://gw');
    assert.equal(got.tlsCertificate!.ocspStaple!.specifier, 'inlineBytes');
    assert.ok(Buffer.from(got.tlsCertificate!.ocspStaple!.inlineBytes!).equals(staple));
    const d = decodeSecretResource(got);
    assert.ok(d.valid);
    assert.equal(d.secret.digest, res.digest);
    assert.equal(d.secret.certificates!.length, 2);
  });

  test('validation_context: trusted_ca and crl', async () => {
    const crl = (await makeCrl(pki.root)).toString('base64');
    const crlPem = `-----BEGIN X509 CRL-----\n${crl}\n-----END X509 CRL-----\n`;
    const res = secretResource('kubernetes://gw-cacert', { kind: 'validationContext', trustedCa: pki.root.cert.pem, crl: crlPem });
    const d = decodeSecretResource(wire(res.message));
    assert.ok(d.valid);
    assert.equal(d.secret.caCertificates!.length, 1);
    assert.equal(d.secret.crls!.length, 1);
    assert.equal(d.secret.digest, res.digest);
  });

  test('a different staple is a different version', async () => {
    const a = secretResource('x', { kind: 'tlsCertificate', certificateChain: pki.leaf.chainPem, privateKey: pki.leaf.keyPem });
    const b = secretResource('x', { kind: 'tlsCertificate', certificateChain: pki.leaf.chainPem, privateKey: pki.leaf.keyPem, ocspStaple: await makeStaple(pki.ca, pki.leaf.cert) });
    assert.notEqual(a.digest, b.digest);
  });
});

describe("what a client refuses, as Envoy does when it applies a Secret", () => {
  const tlsMsg = (extra: Record<string, unknown> = {}, p = pki): SecretMessage => ({
    '@type': SECRET_TYPE_URL,
    name: 'kubernetes://gw',
    tlsCertificate: { certificateChain: { inlineBytes: Buffer.from(p.leaf.chainPem) }, privateKey: { inlineBytes: Buffer.from(p.leaf.keyPem) }, ...extra },
  });

  test('a key that does not belong to the certificate', async () => {
    const other = await otherLeaf(pki);
    const m = tlsMsg();
    m.tlsCertificate!.privateKey = { inlineBytes: Buffer.from(other.keyPem) };
    assert.match(errorsOf(m), /the private key does not belong to the certificate/);
  });

  test('a staple as inline_string, unsuccessful, about several certificates, or about another certificate', async () => {
    const other = await otherLeaf(pki);
    assert.match(errorsOf(tlsMsg({ ocspStaple: { inlineString: 'abcd' } })), /cannot be provided via inline_string/);
    assert.match(errorsOf(tlsMsg({ ocspStaple: { inlineBytes: buildOcspErrorResponse('internalError') } })), /OCSP response was unsuccessful/);
    const two = await buildOcspResponse({
      responder: { cert: pki.ca.cert, signer: pki.ca.signer },
      responses: [pki.leaf.cert, other.cert].map((c) => ({ certId: certIdFor(c, pki.ca.cert), status: 'good' as const, thisUpdate: new Date(Date.now() - MIN), nextUpdate: new Date(Date.now() + HOUR) })),
      producedAt: new Date(),
    });
    assert.match(errorsOf(tlsMsg({ ocspStaple: { inlineBytes: two } })), /must be for one certificate only/);
    assert.match(errorsOf(tlsMsg({ ocspStaple: { inlineBytes: await makeStaple(pki.ca, other.cert) } })), /OCSP response does not match its TLS certificate/);
    assert.match(errorsOf(tlsMsg({ ocspStaple: { inlineBytes: Buffer.from('junk') } })), /ocsp_staple/);
  });

  test('an expired or revoked staple is accepted: Envoy judges those at handshake time, not when applying', async () => {
    const expired = await makeStaple(pki.ca, pki.leaf.cert, { thisUpdate: new Date(Date.now() - 2 * HOUR), nextUpdate: new Date(Date.now() - HOUR) });
    assert.ok(decodeSecretResource(wire(tlsMsg({ ocspStaple: { inlineBytes: expired } }))).valid);
    const revoked = await makeStaple(pki.ca, pki.leaf.cert, { status: { revoked: { at: new Date(Date.now() - HOUR) } } });
    assert.ok(decodeSecretResource(wire(tlsMsg({ ocspStaple: { inlineBytes: revoked } }))).valid);
  });

  test('a must-staple certificate without a staple', () => {
    assert.match(errorsOf(tlsMsg({}, mustStaple)), /OCSP response is required for must-staple certificate/);
  });

  test('missing parts, file data sources, other types', () => {
    assert.match(errorsOf({ '@type': SECRET_TYPE_URL, name: 'x', tlsCertificate: { certificateChain: { filename: '/etc/cert.pem' } } }), /only inline data sources[\s\S]*without private_key/);
    assert.match(errorsOf({ '@type': SECRET_TYPE_URL, name: 'x' }), /neither tls_certificate nor validation_context/);
    assert.match(errorsOf({ '@type': SECRET_TYPE_URL, name: 'x', validationContext: { trustedCa: { inlineBytes: Buffer.from('nope') } } }), /trusted_ca/);
    const d = decodeSecretResource({ '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', name: 'c' });
    assert.equal(d.valid, false);
    assert.match(!d.valid ? d.errors[0]! : '', /expected type.googleapis.com\/envoy.extensions.transport_sockets.tls.v3.Secret/);
  });
});
