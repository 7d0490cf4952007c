import { describeError } from '../core/index.js';
import { scanOcspRequest, type ScannedCertId } from '../pki/index.js';
import { ocspErrorAnswer, type OcspAnswer, type OcspResponder } from './ocsp-responder.js';

/** What answers OCSP requests at one URL: a responder, or a router over several. */
export interface OcspAnswerer {
  answer(request: Uint8Array): OcspAnswer | Promise<OcspAnswer>;
}

/**
 * One OCSP URL for several CAs (one per trust domain), each with its own responder and delegated signer: the
 * CertID's issuerNameHash and issuerKeyHash pick the responder (RFC 6960 §4.1.1), so a client asks the same URL
 * whichever CA issued its certificate. A CertID naming no CA of ours is `unauthorized` (§2.3), as is a request
 * mixing CAs: one response has one signer, and each CA's answers are signed by that CA's own delegated signer.
 */
export class OcspRouter implements OcspAnswerer {
  readonly responders: readonly OcspResponder[];

  constructor(responders: readonly OcspResponder[]) {
    this.responders = [...responders];
  }

  answer(request: Uint8Array): OcspAnswer | Promise<OcspAnswer> {
    let ids: ScannedCertId[];
    try {
      ids = scanOcspRequest(request).certIds;
    } catch (err) {
      return ocspErrorAnswer('malformedRequest', describeError(err));
    }
    // One CA (the usual server): its responder refuses foreign CertIDs itself, after its cache lookup.
    if (this.responders.length === 1) return this.responders[0]!.answerIds(ids);
    const responder = this.#responderOf(ids[0]!);
    if (!responder) {
      return ocspErrorAnswer('unauthorized', ids[0]!.hash ? 'CertID names an issuer this responder does not serve' : 'CertID hash algorithm not supported');
    }
    for (let i = 1; i < ids.length; i++) {
      const other = this.#responderOf(ids[i]!);
      if (other !== responder) {
        return ocspErrorAnswer(
          'unauthorized',
          other ? 'the request names certificates of several CAs; ask for each CA in its own request' : 'CertID names an issuer this responder does not serve',
        );
      }
    }
    return responder.answerIds(ids);
  }

  /** The responder of the CA a CertID names (a handful of CAs at most: a linear look is the cheapest). */
  #responderOf(id: ScannedCertId): OcspResponder | null {
    for (const r of this.responders) if (r.issues(id)) return r;
    return null;
  }
}
