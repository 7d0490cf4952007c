import type { KeyObject } from 'node:crypto';
import { ErrorCodes, MeshError, isMeshError, describeError } from '../core/index.js';
import { Certificate, checkX509Svid, formatChainProblems, keysMatch, spkiDer, validateChain } from '../pki/index.js';

/** A certificate the agent accepted from its CA: what it serves over SDS and writes to files. */
export interface IssuedCertificate {
  leaf: Certificate;
  /** Leaf then intermediates (no root): SDS `default` and cert-chain.pem. */
  chain: Certificate[];
  chainPem: string;
  /** The trust bundle the CA returned (every root). */
  bundle: Certificate[];
  spiffeId: string;
}

export interface IssuedChainCheck {
  /** The CA's `cert_chain`: leaf, intermediates, then the trust bundle as last element. */
  certChain: string[];
  /** The key the CSR was made with: the leaf must certify its public half. */
  privateKey: KeyObject;
  /** Roots the agent already trusts (--ca-root and the bundle it serves): the returned bundle must share one. */
  anchors: Certificate[];
  /** The exact SPIFFE ID expected (--spiffe-id, or the one held before with the same credential). */
  expectedId?: string | null;
  /** The end of the path expected (`/ns/NS/sa/SA` from a service-account token). */
  expectedPathSuffix?: string | null;
  /** Where the answer came from, for messages. */
  source: string;
  at: Date;
}

/**
 * Intermediates and roots come back identical in every answer (and to every agent of a simulated fleet): parsed once
 * and kept, by their PEM text, in a small cache. Only the leaf is new each time.
 */
const parsedCache = new Map<string, Certificate[]>();
const PARSED_CACHE_MAX = 64;

export function parseCached(pem: string, source: string): Certificate[] {
  const hit = parsedCache.get(pem);
  if (hit) return hit;
  const certs = Certificate.parseAll(pem, source);
  if (parsedCache.size >= PARSED_CACHE_MAX) parsedCache.delete(parsedCache.keys().next().value!);
  parsedCache.set(pem, certs);
  return certs;
}

function rejected(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], source: string, message: string, details?: Record<string, unknown>): MeshError {
  return new MeshError(code, `${source}: certificate rejected, not served: ${message}`, { subject: source, ...(details ? { details } : {}) });
}

/**
 * Checks a CA's answer before anything is served: the shape of Istio's `cert_chain`; the leaf certifies our key;
 * it is an X509-SVID whose SPIFFE ID is the one expected (or at least consistent with the credential); the chain
 * verifies, now, to the returned trust bundle; and that bundle shares a root with what the agent already trusts,
 * so that a CA answer cannot swap the whole trust anchor. Every failure is a MeshError naming the CA and the check.
 */
export function checkIssuedChain(options: IssuedChainCheck): IssuedCertificate {
  const { certChain, source } = options;
  if (certChain.length < 2) {
    throw rejected(ErrorCodes.CHAIN, source, `the answer has ${certChain.length} element(s); Istio's cert_chain is the leaf, any intermediates, then the trust bundle`);
  }
  let chain: Certificate[];
  let bundle: Certificate[];
  try {
    chain = certChain.slice(0, -1).flatMap((pem, i) => (i === 0 ? Certificate.parseAll(pem, 'cert_chain[0]') : parseCached(pem, `cert_chain[${i}]`)));
    bundle = parseCached(certChain[certChain.length - 1]!, 'trust bundle (last cert_chain element)');
  } catch (err) {
    throw new MeshError(isMeshError(err) ? err.code : ErrorCodes.CERT_PARSE, `${source}: certificate rejected, not served: ${describeError(err)}`, { subject: source, cause: err });
  }
  const leaf = chain[0]!;
  if (!keysMatch(options.privateKey, leaf.publicKey)) {
    throw rejected(ErrorCodes.KEY_MISMATCH, source, `the leaf (serial ${leaf.serial}) is not for the key of this request`);
  }
  const problems = checkX509Svid(leaf);
  if (problems.length) {
    throw rejected(ErrorCodes.SVID, source, `the leaf is not a valid X509-SVID: ${problems.map((p) => p.message).join('; ')}`, { violations: problems.map((p) => p.code) });
  }
  const spiffeId = leaf.sans.uri[0]!;
  if (options.expectedId && spiffeId !== options.expectedId) {
    throw rejected(ErrorCodes.IDENTITY_MISMATCH, source, `it is for ${spiffeId}, but this agent is ${options.expectedId}`, { got: spiffeId, expected: options.expectedId });
  }
  if (options.expectedPathSuffix && !new URL(spiffeId).pathname.endsWith(options.expectedPathSuffix)) {
    throw rejected(ErrorCodes.IDENTITY_MISMATCH, source, `it is for ${spiffeId}, but the token stands for service account ${options.expectedPathSuffix}`, {
      got: spiffeId,
      expected: options.expectedPathSuffix,
    });
  }
  const anchorKeys = new Set(options.anchors.map((c) => spkiDer(c.publicKey).toString('base64')));
  if (!bundle.some((r) => anchorKeys.has(spkiDer(r.publicKey).toString('base64')))) {
    throw rejected(
      ErrorCodes.CHAIN,
      source,
      `the trust bundle it returned (${bundle.map((r) => `"${r.subject}"`).join(', ')}) shares no root with --ca-root or the bundle served so far`,
    );
  }
  const result = validateChain({ leaf, intermediates: chain.slice(1), roots: bundle, at: options.at, purpose: 'any' });
  if (!result.ok) {
    throw rejected(ErrorCodes.CHAIN, source, `the chain does not verify to the trust bundle: ${formatChainProblems(result.reasons)}`, { reasons: result.reasons });
  }
  return { leaf, chain, chainPem: chain.map((c) => c.pem).join(''), bundle, spiffeId };
}

/** Distinct certificates of several bundles, in order (the same root twice is served once). */
export function mergeBundles(...bundles: Certificate[][]): Certificate[] {
  const seen = new Set<string>();
  const out: Certificate[] = [];
  for (const c of bundles.flat()) {
    if (seen.has(c.fingerprint256)) continue;
    seen.add(c.fingerprint256);
    out.push(c);
  }
  return out;
}
