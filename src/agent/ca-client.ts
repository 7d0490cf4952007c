import { fileURLToPath } from 'node:url';
import { Metadata, credentials, makeGenericClientConstructor, status as Status, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ErrorCodes, MeshError, describeError, type ErrorCode } from '../core/index.js';

/**
 * The same ca.proto the server loads (proto/ at the package root, two levels above both src/agent and
 * dist/agent). Loaded here rather than imported from src/server: the agent does not depend on the control plane.
 */
const PROTO_PATH = fileURLToPath(new URL('../../proto/istio/v1/auth/ca.proto', import.meta.url));
const SERVICE = 'istio.v1.auth.IstioCertificateService';

export interface CertificateRequestOptions {
  /** HOST:PORT of the CA's gRPC API (istiod's is 15012). */
  address: string;
  /** The trust bundle that verifies the CA's serving certificate (root-cert.pem). */
  rootCertPem: string;
  /** The name checked in the CA's serving certificate, whatever `address` says (Istio: istiod.istio-system.svc). */
  serverName: string;
  csrPem: string;
  /** Requested lifetime; the CA may shorten it. 0 asks for the CA's default. */
  validitySeconds: number;
  /** Sent as `authorization: Bearer …`: a JWT or a bootstrap token. */
  bearerToken?: string;
  /** The caller's current certificate and key, presented in the TLS handshake (renewal). */
  clientCert?: { certChainPem: string; keyPem: string };
  /** google.protobuf.Struct metadata, as Istio sends (WorkloadName, ClusterID…). */
  metadata?: Record<string, unknown>;
  timeoutMs?: number;
}

export interface CertificateResponse {
  /** Leaf, intermediates, then the trust bundle as last element: the Istio CA API's `cert_chain`. */
  certChain: string[];
}

type GenericClient = InstanceType<ReturnType<typeof makeGenericClientConstructor>> & {
  CreateCertificate(req: unknown, md: Metadata, opts: { deadline: Date }, cb: (err: ServiceError | null, res?: { certChain?: unknown }) => void): void;
};

let clientCtor: (new (address: string, creds: ReturnType<typeof credentials.createSsl>, options: Record<string, unknown>) => GenericClient) | undefined;

function ctor(): NonNullable<typeof clientCtor> {
  if (!clientCtor) {
    const pkg = loadSync(PROTO_PATH, { keepCase: false, longs: Number, enums: String, defaults: true, arrays: true, oneofs: true });
    const service = pkg[SERVICE] as unknown as Parameters<typeof makeGenericClientConstructor>[0];
    clientCtor = makeGenericClientConstructor(service, SERVICE) as unknown as typeof clientCtor;
  }
  return clientCtor!;
}

/** MeshError code for a gRPC status, so callers branch on our codes; the gRPC code stays in `details`. */
function meshCodeFor(code: Status): ErrorCode {
  switch (code) {
    case Status.UNAUTHENTICATED:
      return ErrorCodes.UNAUTHENTICATED;
    case Status.PERMISSION_DENIED:
      return ErrorCodes.PERMISSION_DENIED;
    case Status.INVALID_ARGUMENT:
      return ErrorCodes.INVALID_ARGUMENT;
    case Status.RESOURCE_EXHAUSTED:
      return ErrorCodes.RATE_LIMITED;
    case Status.UNAVAILABLE:
    case Status.DEADLINE_EXCEEDED:
      return ErrorCodes.UNAVAILABLE;
    default:
      return ErrorCodes.INTERNAL;
  }
}

function toStruct(obj: Record<string, unknown>): unknown {
  const value = (v: unknown): unknown => {
    if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
    if (typeof v === 'number') return { numberValue: v };
    if (typeof v === 'boolean') return { boolValue: v };
    if (Array.isArray(v)) return { listValue: { values: v.map(value) } };
    if (typeof v === 'object') return { structValue: toStruct(v as Record<string, unknown>) };
    return { stringValue: String(v) };
  };
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, value(v)])) };
}

/**
 * Asks a CA for a certificate over the Istio CA API, as istio-agent does: TLS to the CA (verified against
 * `rootCertPem` for `serverName`), the CSR in the body, the credential as a bearer token or a client certificate.
 * A refusal becomes a MeshError whose message is the CA's and whose details keep the gRPC code.
 */
export async function requestCertificate(options: CertificateRequestOptions): Promise<CertificateResponse> {
  const { address } = options;
  let creds;
  try {
    creds = credentials.createSsl(
      Buffer.from(options.rootCertPem),
      options.clientCert ? Buffer.from(options.clientCert.keyPem) : null,
      options.clientCert ? Buffer.from(options.clientCert.certChainPem) : null,
    );
  } catch (err) {
    throw new MeshError(ErrorCodes.INVALID_ARGUMENT, `TLS settings for the CA at ${address}: ${describeError(err)}`, { subject: address, cause: err });
  }
  const Client = ctor();
  const client = new Client(address, creds, {
    // Dial the address, check the certificate for serverName (the CA is usually reached by IP or a Service name).
    'grpc.ssl_target_name_override': options.serverName,
    'grpc.default_authority': options.serverName,
  });
  const md = new Metadata();
  if (options.bearerToken !== undefined) md.set('authorization', `Bearer ${options.bearerToken}`);
  const request = {
    csr: options.csrPem,
    validityDuration: Math.max(0, Math.round(options.validitySeconds)),
    ...(options.metadata ? { metadata: toStruct(options.metadata) } : {}),
  };
  try {
    const res = await new Promise<{ certChain?: unknown }>((resolve, reject) => {
      client.CreateCertificate(request, md, { deadline: new Date(Date.now() + (options.timeoutMs ?? 30_000)) }, (err, r) => (err ? reject(err) : resolve(r ?? {})));
    });
    const chain = res.certChain;
    if (!Array.isArray(chain) || chain.length === 0 || !chain.every((c) => typeof c === 'string' && c.length > 0)) {
      throw new MeshError(ErrorCodes.INTERNAL, `CA at ${address}: the response holds no certificate chain`, { subject: address });
    }
    return { certChain: chain as string[] };
  } catch (err) {
    if (err instanceof MeshError) throw err;
    const se = err as Partial<ServiceError>;
    const code = typeof se.code === 'number' ? (se.code as Status) : Status.UNKNOWN;
    const name = Status[code] ?? String(code);
    throw new MeshError(meshCodeFor(code), `CA at ${address}: ${se.details || describeError(err)} (gRPC ${name})`, {
      subject: address,
      cause: err,
      details: { grpcCode: code, grpcStatus: name },
    });
  } finally {
    client.close();
  }
}
