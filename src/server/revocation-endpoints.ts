import type { IncomingMessage, ServerResponse } from 'node:http';
import { isSignedAnswer, ocspErrorAnswer, type CrlPublisher, type OcspAnswer, type OcspAnswerer, type PublishedCrl, type SignedOcspAnswer } from '../ca/index.js';
import { describeError, silentLogger, type Logger } from '../core/index.js';
import type { ServerMetrics } from './metrics.js';

/** A trust domain's revocation and trust material on the HTTP listener. */
export interface DomainEndpoints {
  trustDomain: string;
  /** Where its CRL is served: /crl for the main trust domain, /crl/<trust domain> for the others. */
  crlPath: string;
  crl: CrlPublisher;
  /** Its trust bundle (root-cert.pem). */
  trustBundlePem: string;
}

export interface RevocationEndpointsOptions {
  /** Answers for every CA (an OcspRouter over each CA's responder). */
  ocsp: OcspAnswerer;
  /** One per trust domain, the main one first. */
  domains: DomainEndpoints[];
  /** POST bodies above this are refused with 413 and malformedRequest, unread. */
  maxRequestBytes: number;
  metrics: ServerMetrics;
  logger?: Logger;
}

const OCSP_RESPONSE = 'application/ocsp-response';
const GET_PREFIX = '/ocsp/';
/** CRLs are re-made on every revocation: caches may keep one this long at most, then revalidate (ETag). */
const CRL_MAX_AGE_S = 60;

/** Header values of a signed answer that do not change while it is cached, made once per answer. */
interface StaticHeaders {
  length: string;
  expires: string;
  lastModified: string;
  nextUpdateMs: number;
}

/**
 * The revocation endpoints of the public HTTP listener: the OCSP responder (RFC 6960 over HTTP, RFC 5019 profile)
 * by POST and GET for every CA, each CA's CRL at its own path, and the trust bundles at /roots (each trust domain's
 * labelled, when there are several) and /roots/<trust domain>. Transport only: every answer comes from the OCSP
 * responders and the CRL publishers. A cached OCSP answer is written without awaiting anything, with header values
 * computed once per answer, since this is what a mesh of tens of thousands of workloads hits.
 */
export class RevocationEndpoints {
  readonly #opts: RevocationEndpointsOptions;
  readonly #logger: Logger;
  readonly #headers = new WeakMap<SignedOcspAnswer, StaticHeaders>();
  readonly #rootsPem: Buffer;
  readonly #rootsOf = new Map<string, Buffer>();
  readonly #crls = new Map<string, CrlPublisher>();

  constructor(options: RevocationEndpointsOptions) {
    this.#opts = options;
    this.#logger = options.logger ?? silentLogger;
    for (const d of options.domains) {
      this.#crls.set(d.crlPath, d.crl);
      this.#rootsOf.set(d.trustDomain, Buffer.from(d.trustBundlePem));
    }
    // One trust domain: root-cert.pem as it is. Several: each bundle after a line naming its trust domain (text
    // outside PEM blocks, which PEM readers skip), so a person sees which roots are whose.
    this.#rootsPem =
      options.domains.length === 1
        ? Buffer.from(options.domains[0]!.trustBundlePem)
        : Buffer.from(options.domains.map((d) => `# trust domain ${d.trustDomain}\n${d.trustBundlePem.endsWith('\n') ? d.trustBundlePem : `${d.trustBundlePem}\n`}`).join(''));
  }

  /** Takes the request when its path is one of ours; false leaves it to the caller. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/';
    if (url.startsWith('/ocsp')) {
      if (url === '/ocsp' || url === '/ocsp/') {
        if (req.method === 'POST') this.#post(req, res);
        else if (req.method === 'GET') this.#ocspError(res, 'GET', 'malformedRequest', 'GET /ocsp/ without a request', 'base64');
        else methodNotAllowed(res, 'GET, POST');
        return true;
      }
      if (url.startsWith(GET_PREFIX)) {
        if (req.method === 'GET') this.#get(req, res, url.slice(GET_PREFIX.length));
        else methodNotAllowed(res, 'GET');
        return true;
      }
      return false;
    }
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const crl = this.#crls.get(path);
    if (crl) {
      if (req.method !== 'GET' && req.method !== 'HEAD') methodNotAllowed(res, 'GET, HEAD');
      else this.#crl(req, res, crl, q < 0 ? '' : url.slice(q + 1));
      return true;
    }
    const roots = path === '/roots' ? this.#rootsPem : path.startsWith('/roots/') ? this.#rootsOf.get(path.slice('/roots/'.length)) : undefined;
    if (roots) {
      if (req.method !== 'GET' && req.method !== 'HEAD') methodNotAllowed(res, 'GET, HEAD');
      else {
        res.writeHead(200, ['content-type', 'application/x-pem-file', 'content-length', String(roots.length), 'cache-control', 'public, max-age=300']);
        res.end(req.method === 'HEAD' ? undefined : roots);
      }
      return true;
    }
    return false;
  }

  #post(req: IncomingMessage, res: ServerResponse): void {
    const max = this.#opts.maxRequestBytes;
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > max) return this.#tooLarge(req, res, Number(declared));
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > max) {
        refused = true;
        this.#tooLarge(req, res, size);
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) return;
      this.#answer(res, 'POST', chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), null);
    });
    req.on('error', (err) => this.#logger.debug({ error: describeError(err) }, 'OCSP POST body not received'));
  }

  #get(req: IncomingMessage, res: ServerResponse, rest: string): void {
    // The whole rest of the path is the request: standard base64 may hold '/', which clients do not always encode.
    let b64 = rest;
    if (b64.includes('%')) {
      try {
        b64 = decodeURIComponent(b64);
      } catch {
        return this.#ocspError(res, 'GET', 'malformedRequest', 'GET request: bad URL encoding', 'base64');
      }
    }
    // '+' turned into ' ' by a form decoder on the way; base64url (-, _) accepted as well.
    if (b64.includes(' ')) b64 = b64.replaceAll(' ', '+');
    if (b64.length === 0 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(b64)) {
      return this.#ocspError(res, 'GET', 'malformedRequest', 'GET request: not base64', 'base64');
    }
    this.#answer(res, 'GET', Buffer.from(b64, 'base64'), req.headers['if-none-match'] ?? null);
  }

  #answer(res: ServerResponse, method: 'GET' | 'POST', der: Buffer, ifNoneMatch: string | null): void {
    let answer: OcspAnswer | Promise<OcspAnswer>;
    try {
      answer = this.#opts.ocsp.answer(der);
    } catch (err) {
      answer = ocspErrorAnswer('internalError', describeError(err));
    }
    if (!(answer instanceof Promise)) {
      if (isSignedAnswer(answer)) this.#opts.metrics.ocspCache.inc({ result: 'hit' });
      return this.#send(res, method, answer, ifNoneMatch);
    }
    answer.then(
      (a) => {
        if (isSignedAnswer(a)) this.#opts.metrics.ocspCache.inc({ result: 'miss' });
        this.#send(res, method, a, ifNoneMatch);
      },
      (err: unknown) => this.#send(res, method, ocspErrorAnswer('internalError', describeError(err)), null),
    );
  }

  #send(res: ServerResponse, method: 'GET' | 'POST', answer: OcspAnswer, ifNoneMatch: string | null): void {
    this.#opts.metrics.ocspRequests.inc({ method, status: answer.outcome });
    if (!isSignedAnswer(answer)) {
      if (answer.outcome === 'malformedRequest') this.#opts.metrics.ocspMalformed.inc({ reason: 'der' });
      if (answer.outcome === 'internalError') this.#logger.error({ reason: answer.reason }, 'OCSP request failed');
      else this.#logger.debug({ outcome: answer.outcome, reason: answer.reason }, 'OCSP request refused');
      return sendOcspError(res, 200, answer.der);
    }
    let h = this.#headers.get(answer);
    if (!h) {
      h = {
        length: String(answer.der.length),
        expires: answer.nextUpdate.toUTCString(),
        lastModified: answer.producedAt.toUTCString(),
        nextUpdateMs: answer.nextUpdate.getTime(),
      };
      this.#headers.set(answer, h);
    }
    // RFC 5019 §6.2: max-age no later than nextUpdate, so caches never hold an answer past it.
    const maxAge = Math.max(0, Math.floor((h.nextUpdateMs - Date.now()) / 1000));
    const headers = [
      'content-type', OCSP_RESPONSE,
      'cache-control', `max-age=${maxAge}, public, no-transform, must-revalidate`,
      'expires', h.expires,
      'last-modified', h.lastModified,
      'etag', answer.etag,
    ];
    if (ifNoneMatch !== null && ifNoneMatch === answer.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    headers.push('content-length', h.length);
    res.writeHead(200, headers);
    res.end(answer.der);
  }

  #ocspError(res: ServerResponse, method: 'GET' | 'POST', outcome: 'malformedRequest', reason: string, metricReason: string): void {
    this.#opts.metrics.ocspRequests.inc({ method, status: outcome });
    this.#opts.metrics.ocspMalformed.inc({ reason: metricReason });
    this.#logger.debug({ reason }, 'OCSP request refused');
    sendOcspError(res, 200, ocspErrorAnswer(outcome, reason).der);
  }

  #tooLarge(req: IncomingMessage, res: ServerResponse, bytes: number): void {
    this.#opts.metrics.ocspRequests.inc({ method: 'POST', status: 'malformedRequest' });
    this.#opts.metrics.ocspMalformed.inc({ reason: 'too_large' });
    this.#logger.debug({ bytes, max: this.#opts.maxRequestBytes }, 'OCSP request body too large');
    // Answer without reading the rest, and close: the client may still be sending.
    res.shouldKeepAlive = false;
    sendOcspError(res, 413, ocspErrorAnswer('malformedRequest', 'request too large').der);
    res.on('finish', () => req.destroy());
  }

  #crl(req: IncomingMessage, res: ServerResponse, publisher: CrlPublisher, query: string): void {
    const params = new URLSearchParams(query);
    const format = (params.get('format') ?? 'der').toLowerCase();
    if (format !== 'der' && format !== 'pem') {
      this.#opts.metrics.crlRequests.inc({ format: 'invalid', code: '400' });
      return sendText(res, 400, `format "${params.get('format')}" is not der or pem\n`);
    }
    const crl: PublishedCrl | null = publisher.current;
    if (!crl) {
      this.#opts.metrics.crlRequests.inc({ format, code: '503' });
      res.setHeader('retry-after', '1');
      return sendText(res, 503, 'no CRL yet\n');
    }
    const body = format === 'pem' ? Buffer.from(crl.pem) : crl.der;
    const maxAge = Math.max(0, Math.min(CRL_MAX_AGE_S, Math.floor((crl.nextUpdate.getTime() - Date.now()) / 1000)));
    // PEM and DER differ in bytes, so in entity tags too.
    const etag = format === 'pem' ? `${crl.etag.slice(0, -1)}-pem"` : crl.etag;
    const headers = [
      'content-type', format === 'pem' ? 'application/x-pem-file' : 'application/pkix-crl',
      'cache-control', `max-age=${maxAge}, public, no-transform`,
      'expires', crl.nextUpdate.toUTCString(),
      'last-modified', crl.thisUpdate.toUTCString(),
      'etag', etag,
    ];
    if (req.headers['if-none-match'] === etag) {
      this.#opts.metrics.crlRequests.inc({ format, code: '304' });
      res.writeHead(304, headers);
      return void res.end();
    }
    this.#opts.metrics.crlRequests.inc({ format, code: '200' });
    headers.push('content-length', String(body.length));
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

function sendOcspError(res: ServerResponse, status: number, der: Buffer): void {
  res.writeHead(status, ['content-type', OCSP_RESPONSE, 'content-length', String(der.length), 'cache-control', 'no-store']);
  res.end(der);
}

function sendText(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, ['content-type', 'text/plain; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'cache-control', 'no-store']);
  res.end(body);
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('allow', allow);
  sendText(res, 405, 'method not allowed\n');
}
