import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../../src/core/index.js';
import { OcspRequest, buildOcspErrorResponse, buildOcspResponse, type CertId, type OcspCertStatusSpec } from '../../src/pki/index.js';
import type { TestCA } from '../helpers/test-ca.js';

/** What the fake responder does with the next requests. */
export type FakeMode =
  | { kind: 'answer'; status?: OcspCertStatusSpec; validityMs?: number; signer?: TestCA; certId?: CertId; noNextUpdate?: boolean; thisUpdateOffsetMs?: number; echoNonce?: boolean }
  | { kind: 'http'; status: number }
  | { kind: 'garbage' }
  | { kind: 'tryLater' }
  | { kind: 'hang' }
  | { kind: 'huge' };

export interface SeenRequest {
  method: string;
  contentType: string | undefined;
  certIds: readonly CertId[];
  nonce: Buffer | null;
}

/**
 * A small OCSP responder on 127.0.0.1 (port 0) for unit tests of fetching: answers as `mode` says, with times from
 * the test's clock, signed by the CA (or another signer), echoing the nonce; records every request.
 */
export class FakeResponder {
  mode: FakeMode = { kind: 'answer' };
  readonly requests: SeenRequest[] = [];
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(ca: TestCA, clock: Clock): Promise<FakeResponder> {
    let self: FakeResponder | null = null;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          const body = Buffer.concat(chunks);
          let parsed: OcspRequest | null = null;
          try {
            parsed = OcspRequest.parse(body);
          } catch {
            /* recorded as an empty request */
          }
          self!.requests.push({ method: req.method ?? '', contentType: req.headers['content-type'], certIds: parsed?.certIds ?? [], nonce: parsed?.nonce ?? null });
          const mode = self!.mode;
          if (mode.kind === 'hang') return; // never answers; the client times out
          if (mode.kind === 'http') {
            res.writeHead(mode.status, { 'Content-Type': 'text/plain' }).end('responder trouble\n');
            return;
          }
          if (mode.kind === 'garbage') {
            res.writeHead(200, { 'Content-Type': 'application/ocsp-response' }).end(Buffer.from('<html>not ocsp</html>'));
            return;
          }
          if (mode.kind === 'huge') {
            res.writeHead(200, { 'Content-Type': 'application/ocsp-response' }).end(Buffer.alloc(200_000, 0x30));
            return;
          }
          if (mode.kind === 'tryLater') {
            res.writeHead(200, { 'Content-Type': 'application/ocsp-response' }).end(buildOcspErrorResponse('tryLater'));
            return;
          }
          const signer = mode.signer ?? ca;
          const now = clock.now().getTime() + (mode.thisUpdateOffsetMs ?? 0);
          const thisUpdate = new Date(Math.floor(now / 1000) * 1000);
          const der = await buildOcspResponse({
            responder: { cert: signer.cert, signer: signer.signer },
            producedAt: thisUpdate,
            responses: [
              {
                certId: mode.certId ?? parsed!.certIds[0]!,
                status: mode.status ?? 'good',
                thisUpdate,
                ...(mode.noNextUpdate ? {} : { nextUpdate: new Date(thisUpdate.getTime() + (mode.validityMs ?? 3_600_000)) }),
              },
            ],
            ...(parsed?.nonce && mode.echoNonce !== false ? { nonce: parsed.nonce } : {}),
          });
          res.writeHead(200, { 'Content-Type': 'application/ocsp-response' }).end(der);
        })().catch((err: unknown) => res.writeHead(500).end(String(err)));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    self = new FakeResponder(server, `http://127.0.0.1:${port}/ocsp`);
    return self;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
