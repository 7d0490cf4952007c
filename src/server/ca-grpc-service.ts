import { randomUUID } from 'node:crypto';
import { status as Status, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { CallContext, CertificateSigningRequest, CertificateSigningResponse } from '../ca/index.js';
import { ErrorCodes, MeshError, describeError, isMeshError, type Logger } from '../core/index.js';
import { Certificate } from '../pki/index.js';
import {
  istioCaMethod,
  structToObject,
  type IstioCertificateRequestMessage,
  type IstioCertificateResponseMessage,
} from './istio-ca-proto.js';
import type { IssuanceResult, ServerMetrics } from './metrics.js';

/** What the gRPC service needs from the registration authority: the transport never sees more of it. */
export interface CertificateSigner {
  createCertificate(req: CertificateSigningRequest, ctx: CallContext): Promise<CertificateSigningResponse>;
}

/** A request body that did not decode: kept as a value so the handler answers it instead of grpc-js's INTERNAL. */
interface UndecodableRequest {
  undecodable: string;
}

type DecodedRequest = IstioCertificateRequestMessage | UndecodableRequest;

export interface GrpcStatusFor {
  code: Status;
  /** What the caller reads. */
  message: string;
  result: IssuanceResult;
  /** Denial reason for the metrics: the error code without its prefix, lowercase. */
  reason: string;
}

/** MeshError codes that mean the caller's input is at fault. */
const INVALID_ARGUMENT_CODES = new Set<string>([
  ErrorCodes.INVALID_ARGUMENT,
  ErrorCodes.CSR_PARSE,
  ErrorCodes.CSR_SIGNATURE,
  ErrorCodes.KEY_PARSE,
  ErrorCodes.KEY_TYPE,
  ErrorCodes.KEY_TOO_WEAK,
  ErrorCodes.KEY_MISMATCH,
  ErrorCodes.PEM,
  ErrorCodes.DER,
  ErrorCodes.SAN,
  ErrorCodes.NAME,
  ErrorCodes.SPIFFE_ID,
  ErrorCodes.POLICY,
  ErrorCodes.DURATION,
]);

/** The specific cause (the registration authority keeps it in details.reason, e.g. KEY_TOO_WEAK under INVALID_ARGUMENT). */
function reasonOf(err: MeshError): string {
  const specific = err.details?.reason;
  const code = typeof specific === 'string' && specific.startsWith('MESH_ERR_') ? specific : err.code;
  return code.replace(/^MESH_ERR_/, '').toLowerCase();
}

/**
 * Maps a failure to the gRPC status the Istio CA API uses. Messages of caller faults go back as they are (they
 * name what to fix); server faults get a generic message with a reference the operator finds in the log.
 */
export function grpcStatusFor(err: unknown, reference: string): GrpcStatusFor {
  if (isMeshError(err)) {
    const reason = reasonOf(err);
    switch (err.code) {
      case ErrorCodes.UNAUTHENTICATED:
        return { code: Status.UNAUTHENTICATED, message: err.message, result: 'denied', reason };
      case ErrorCodes.PERMISSION_DENIED:
        return { code: Status.PERMISSION_DENIED, message: err.message, result: 'denied', reason };
      case ErrorCodes.RATE_LIMITED:
        return { code: Status.RESOURCE_EXHAUSTED, message: err.message, result: 'denied', reason };
      case ErrorCodes.UNAVAILABLE:
        return { code: Status.UNAVAILABLE, message: err.message, result: 'error', reason };
      case ErrorCodes.LEDGER:
        // Ledger messages carry file paths and SQL details: the caller only needs to know to retry.
        return { code: Status.UNAVAILABLE, message: `the certificate ledger is unavailable; try again later (reference ${reference})`, result: 'error', reason };
      case ErrorCodes.TTL:
        // The policy's TTL errors are the caller's (a non-positive lifetime), except "the CA itself expired".
        return err.subject === 'ca'
          ? { code: Status.UNAVAILABLE, message: err.message, result: 'error', reason: 'ca_expired' }
          : { code: Status.INVALID_ARGUMENT, message: err.message, result: 'denied', reason };
      default:
        if (INVALID_ARGUMENT_CODES.has(err.code)) return { code: Status.INVALID_ARGUMENT, message: err.message, result: 'denied', reason };
    }
  }
  return { code: Status.INTERNAL, message: `internal error in the CA; the server log has the details (reference ${reference})`, result: 'error', reason: 'internal' };
}

/** The gRPC name of a status code, for metric labels ("UNAUTHENTICATED"). */
export function statusName(code: Status): string {
  return Status[code] ?? String(code);
}

export interface CaGrpcServiceOptions {
  signer: CertificateSigner;
  logger: Logger;
  metrics?: ServerMetrics;
  /** Calls being served at once at most; more are answered RESOURCE_EXHAUSTED at once. Default 1024. */
  maxInFlight?: number;
  /**
   * A call whose deadline is nearer than this when its turn comes is answered DEADLINE_EXCEEDED without doing the
   * work: under overload the backlog is mostly calls whose clients are about to give up. Default 50 ms.
   */
  minDeadlineMarginMs?: number;
}

/**
 * The Istio CA API on grpc-js: turns a call into a CertificateSigningRequest and a CallContext (bearer token,
 * TLS-verified client certificate, peer address), asks the registration authority, and maps its verdict to a
 * gRPC status. No failure of one call, whatever its body, escapes into the server.
 */
export function createCaGrpcService(options: CaGrpcServiceOptions): { definition: ServiceDefinition; implementation: UntypedServiceImplementation } {
  const method = istioCaMethod();
  const definition = {
    CreateCertificate: {
      ...method,
      // grpc-js answers a body that fails to decode with a bare INTERNAL; decoding here lets the handler say what
      // is wrong (INVALID_ARGUMENT) and count it.
      requestDeserialize: (buf: Buffer): DecodedRequest => {
        try {
          return method.requestDeserialize(buf);
        } catch (err) {
          return { undecodable: describeError(err) };
        }
      },
    },
  } as unknown as ServiceDefinition;

  const { signer, logger, metrics } = options;
  const maxInFlight = options.maxInFlight ?? 1024;
  const marginMs = options.minDeadlineMarginMs ?? 50;
  let inFlight = 0;

  const handler = (call: ServerUnaryCall<DecodedRequest, IstioCertificateResponseMessage>, callback: sendUnaryData<IstioCertificateResponseMessage>): void => {
    const started = process.hrtime.bigint();
    const peer = safePeer(call);
    const finish = (result: IssuanceResult, code: Status, reason?: string): void => {
      metrics?.observeIssuance(result, statusName(code), Number(process.hrtime.bigint() - started) / 1e9, reason);
    };
    // Shed before any work (authentication and CSR checks are most of the CPU of a call).
    const shed = shedReason(call, inFlight, maxInFlight, marginMs);
    if (shed) {
      metrics?.shed(shed.reason);
      finish('error', shed.code);
      logger.debug({ peer, reason: shed.reason }, 'CreateCertificate shed');
      callback({ code: shed.code, details: shed.message });
      return;
    }
    inFlight++;
    const done = (): void => {
      inFlight--;
    };
    void (async () => {
      const req = toSigningRequest(call.request);
      const ctx = callContext(call, peer, logger);
      const res = await signer.createCertificate(req, ctx);
      return res;
    })()
      .finally(done)
      .then(
        (res) => {
          finish('issued', Status.OK);
          logger.debug({ peer, identity: res.identity, serial: res.serial }, 'certificate issued');
          callback(null, { certChain: res.certChain });
        },
        (err: unknown) => {
          const reference = randomUUID().slice(0, 8);
          const st = grpcStatusFor(err, reference);
          finish(st.result, st.code, st.reason);
          if (st.code === Status.INTERNAL) {
            logger.error({ peer, reference, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'CreateCertificate failed');
          } else if (st.result === 'error') {
            logger.warn({ peer, reference, code: isMeshError(err) ? err.code : undefined, error: describeError(err) }, 'CreateCertificate unavailable');
          } else {
            logger.info({ peer, code: isMeshError(err) ? err.code : undefined, reason: st.message }, 'CreateCertificate denied');
          }
          callback({ code: st.code, details: st.message });
        },
      );
  };

  return { definition, implementation: { CreateCertificate: handler } };
}

/** Why a call is answered at once without being served, or null to serve it. */
function shedReason(call: ServerUnaryCall<unknown, unknown>, inFlight: number, maxInFlight: number, marginMs: number): { code: Status; reason: string; message: string } | null {
  if (call.cancelled) return { code: Status.CANCELLED, reason: 'cancelled', message: 'the call was cancelled before it was served' };
  if (inFlight >= maxInFlight) {
    return { code: Status.RESOURCE_EXHAUSTED, reason: 'overloaded', message: `the CA is serving ${inFlight} calls, its limit (grpc.maxInFlight); retry with backoff` };
  }
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  if (Number.isFinite(at) && at - Date.now() < marginMs) {
    return { code: Status.DEADLINE_EXCEEDED, reason: 'deadline', message: `the call's deadline was ${at - Date.now() < 0 ? 'past' : 'too near'} when its turn came (the CA is busy); retry with backoff or a longer deadline` };
  }
  return null;
}

function safePeer(call: ServerUnaryCall<unknown, unknown>): string {
  try {
    return call.getPeer();
  } catch {
    return 'unknown';
  }
}

/** Checks what the transport can check; everything about the CSR itself is the registration authority's. */
function toSigningRequest(request: DecodedRequest): CertificateSigningRequest {
  if ('undecodable' in request) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `the request body is not an istio.v1.auth.IstioCertificateRequest: ${request.undecodable}`);
  }
  if (typeof request.csr !== 'string' || request.csr.trim() === '') {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, 'csr: empty; send a PEM-encoded PKCS#10 certificate request', { subject: 'csr' });
  }
  const validity = Number(request.validityDuration ?? 0);
  if (!Number.isFinite(validity) || validity < 0) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `validity_duration: ${String(request.validityDuration)} is not a number of seconds >= 0`, {
      subject: 'validity_duration',
    });
  }
  const metadata = request.metadata ? structToObject(request.metadata) : undefined;
  return {
    csrPem: request.csr,
    ...(validity > 0 ? { validitySeconds: validity } : {}),
    ...(metadata && Object.keys(metadata).length ? { metadata } : {}),
  };
}

/** What the registration authority learns of the caller; the client certificate only when TLS verified it. */
function callContext(call: ServerUnaryCall<unknown, unknown>, peer: string, logger: Logger): CallContext {
  const ctx: CallContext = { remoteAddress: peer };
  const auth = call.metadata.get('authorization').find((v): v is string => typeof v === 'string');
  if (auth !== undefined) ctx.authorization = auth;
  // grpc-js hands over the leaf only, and only when the handshake verified it against the CA's trust bundle.
  const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
  if (raw) {
    try {
      ctx.peerCertificates = [Certificate.fromDer(raw, 'client certificate')];
    } catch (err) {
      logger.warn({ peer, error: describeError(err) }, 'unparsable client certificate ignored');
    }
  }
  return ctx;
}
