// Client certificates of MUTUAL and ISTIO_MUTUAL servers, checked right after the handshake. OpenSSL (through
// Node's ca/crl options) has already judged chain, validity, purpose (sslclient) and — in Envoy's default mode —
// the CRLs of the whole chain, where a CA without a CRL fails (UNABLE_TO_GET_CRL); we read its verdict from
// `authorizationError`. What Node cannot do is done here: CRLs of the leaf only (Envoy's only_verify_leaf_cert_crl),
// subjectAltNames, and the SPIFFE trust domain of ISTIO_MUTUAL peers. Every failure has a stable reason, one
// metric counter each, as Envoy's ssl.fail_verify_* counters.
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { Certificate, spiffeIdOf, type Crl } from '../pki/index.js';
import type { PeerIdentity } from './connection-context.js';
import type { ValidationCredential } from './credential-store.js';

export interface PeerPolicy {
  mode: 'MUTUAL' | 'ISTIO_MUTUAL';
  validation: ValidationCredential;
  /** Check CRLs for the leaf only (Node then gets no `crl` option and this module does the check). */
  onlyVerifyLeafCertCrl: boolean;
  /** The leaf must carry one of these SANs (exact match on DNS, URI, email or IP). */
  subjectAltNames?: readonly string[] | undefined;
  /** ISTIO_MUTUAL: the peer's SPIFFE ID must be in this trust domain. */
  trustDomain?: string | undefined;
}

export type PeerVerdict = { ok: true; peer: PeerIdentity } | { ok: false; reason: string; message: string };

function fail(reason: string, message: string): PeerVerdict {
  return { ok: false, reason, message };
}

// Parsed peer certificates by fingerprint: every MUTUAL handshake presents the same intermediates and anchor (and a
// client reconnecting, the same leaf), and a parse costs ~0.5 ms, so each is parsed once. Bounded; oldest out first.
const parsedPeers = new Map<string, Certificate>();
const MAX_PARSED_PEERS = 4096;

function parsedPeer(c: PeerCertificate, position: number): Certificate {
  const hit = parsedPeers.get(c.fingerprint256);
  if (hit) return hit;
  const cert = Certificate.fromDer(c.raw, `peer certificate ${position}`);
  if (parsedPeers.size >= MAX_PARSED_PEERS) parsedPeers.delete(parsedPeers.keys().next().value!);
  parsedPeers.set(c.fingerprint256, cert);
  return cert;
}

/** The certificates the peer presented as OpenSSL chained them (leaf first, then issuers up to the anchor). */
export function peerChain(socket: TLSSocket): Certificate[] {
  const out: Certificate[] = [];
  let c: PeerCertificate | undefined = socket.getPeerCertificate(true) as PeerCertificate | undefined;
  const seen = new Set<string>();
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(parsedPeer(c, out.length));
    const next = (c as PeerCertificate & { issuerCertificate?: PeerCertificate }).issuerCertificate;
    if (!next || next === c) break;
    c = next;
  }
  return out;
}

/** Envoy's only_verify_leaf_cert_crl: a CRL from the leaf's issuer must exist, be current and not list the leaf. */
export function checkLeafCrl(leaf: Certificate, issuer: Certificate | undefined, crls: readonly Crl[], at: Date): PeerVerdict | null {
  const mine = crls.filter((crl) => crl.issuerDer.equals(leaf.issuerDer) && (!issuer || crl.verifySignature(issuer)));
  if (mine.length === 0) return fail('unable_to_get_crl', `no CRL of the client certificate's issuer ("${leaf.issuer}")`);
  const current = mine.filter((crl) => crl.isCurrentAt(at));
  if (current.length === 0) {
    const future = mine.every((crl) => crl.thisUpdate.getTime() > at.getTime());
    return future ? fail('crl_not_yet_valid', `the CRL of "${leaf.issuer}" is not valid yet`) : fail('crl_has_expired', `the CRL of "${leaf.issuer}" is stale (nextUpdate passed)`);
  }
  for (const crl of current) {
    const e = crl.lookup(leaf.serial);
    if (e) return fail('cert_revoked', `client certificate ${leaf.serial} ("${leaf.subject}") is revoked (${e.reason}) by ${crl.source}`);
  }
  return null;
}

function sanMatches(leaf: Certificate, wanted: readonly string[]): boolean {
  const s = leaf.sans;
  const have = new Set([...s.dns.map((d) => d.toLowerCase()), ...s.uri, ...s.email, ...s.ip]);
  return wanted.some((w) => have.has(w) || have.has(w.toLowerCase()));
}

/**
 * Judges the client certificate of a finished handshake. Synchronous and cheap (a certificate is parsed the first
 * time it is seen); the async validators of issue #9 run after it.
 */
export function verifyPeer(socket: TLSSocket, policy: PeerPolicy, at: Date): PeerVerdict {
  let chain: Certificate[];
  try {
    chain = peerChain(socket);
  } catch (err) {
    return fail('bad_certificate', `the client certificate does not parse: ${(err as Error).message}`);
  }
  if (chain.length === 0) return fail('no_client_certificate', 'the client sent no certificate');
  const leaf = chain[0]!;
  const nodeError = socket.authorizationError as unknown as string | Error | null | undefined;
  if (nodeError) {
    const code = typeof nodeError === 'string' ? nodeError : ((nodeError as Error & { code?: string }).code ?? nodeError.message);
    return fail(String(code).toLowerCase(), `client certificate ${leaf.serial} ("${leaf.subject}") refused: ${code}`);
  }
  if (policy.onlyVerifyLeafCertCrl && policy.validation.crls.length > 0) {
    const issuer = chain[1] ?? policy.validation.cas.find((c) => leaf.isIssuedBy(c));
    const v = checkLeafCrl(leaf, issuer, policy.validation.crls, at);
    if (v) return v;
  }
  if (policy.subjectAltNames && policy.subjectAltNames.length > 0 && !sanMatches(leaf, policy.subjectAltNames)) {
    return fail('san', `client certificate ${leaf.serial} has none of the subjectAltNames ${policy.subjectAltNames.join(', ')}`);
  }
  const id = spiffeIdOf(leaf);
  if (policy.mode === 'ISTIO_MUTUAL') {
    if (!id) return fail('spiffe_id', `client certificate ${leaf.serial} ("${leaf.subject}") has no SPIFFE ID (one URI SAN spiffe://…)`);
    if (policy.trustDomain && !id.memberOf(policy.trustDomain)) {
      return fail('trust_domain', `client ${id.toString()} is not in the trust domain ${policy.trustDomain}`);
    }
  }
  return { ok: true, peer: { chain, spiffeId: id?.toString() } };
}
