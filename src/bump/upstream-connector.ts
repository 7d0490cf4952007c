import type { X509Certificate } from 'node:crypto';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type SecureContext, type TLSSocket } from 'node:tls';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';

/** Where a host:port really is: the configured fixed address (upstream.resolve) or the name itself (DNS). */
export type UpstreamResolver = (host: string, port: number) => { host: string; port: number };

export function fixedAddressResolver(map: Record<string, string> = {}): UpstreamResolver {
  const table = new Map<string, { host: string; port: number }>();
  for (const [from, to] of Object.entries(map)) {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(to);
    if (!m) throw new MeshError(ErrorCodes.CONFIG, `upstream.resolve["${from}"]: "${to}" is not HOST:PORT`, { subject: `upstream.resolve["${from}"]` });
    table.set(from.toLowerCase(), { host: (m[1] ?? m[2])!, port: Number(m[3]) });
  }
  return (host, port) => table.get(`${host.toLowerCase()}:${port}`) ?? { host, port };
}

/** Why an upstream certificate is not accepted; the names are metric labels. */
export type UpstreamCertificateProblem = 'expired' | 'not-yet-valid' | 'untrusted' | 'hostname' | 'no-san' | 'other';

export interface UpstreamTls {
  socket: TLSSocket;
  /** The protocol the upstream chose, or false when it chose none. */
  alpn: string | false;
  cert: X509Certificate;
  /** Null when the chain verified against the configured trust and names the host; else why not. */
  problem: { reason: UpstreamCertificateProblem; message: string } | null;
}

export interface ConnectUpstreamOptions {
  /** The name the client asked for: SNI sent upstream and the name the certificate must carry. */
  serverName: string;
  port: number;
  resolve: UpstreamResolver;
  alpnProtocols: string[];
  /**
   * The trust for upstream certificates, made once (tls.createSecureContext({ ca })): without it tls.connect makes a
   * new OpenSSL context, and parses the CA bundle, on every connection.
   */
  secureContext: SecureContext;
  timeoutMs: number;
}

function label(name: string, port: number, addr: { host: string; port: number }): string {
  const direct = addr.host === name && addr.port === port;
  return direct ? `${name}:${port}` : `${name}:${port} (${addr.host}:${addr.port})`;
}

function problemOf(socket: TLSSocket, cert: X509Certificate, serverName: string): UpstreamTls['problem'] {
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'unknown');
    const reason: UpstreamCertificateProblem =
      code === 'CERT_HAS_EXPIRED' ? 'expired' : code === 'CERT_NOT_YET_VALID' ? 'not-yet-valid' : /SIGNATURE|ISSUER|SELF_SIGNED|UNTRUSTED|CHAIN/.test(code) ? 'untrusted' : 'other';
    return { reason, message: `certificate not valid: ${code}` };
  }
  if (!cert.subjectAltName) return { reason: 'no-san', message: 'certificate has no subjectAltName (a CN-only certificate names no host)' };
  const matched = isIP(serverName) ? cert.checkIP(serverName) : cert.checkHost(serverName, { subject: 'never' });
  if (!matched) return { reason: 'hostname', message: `certificate does not name ${serverName} (SANs: ${cert.subjectAltName})` };
  return null;
}

/**
 * Connects to the upstream over TLS with the client's SNI and ALPN offers and completes the handshake, without
 * rejecting: the caller decides what an invalid certificate means (mimic the error or refuse). Rejects with
 * MESH_ERR_BUMP_UPSTREAM when the upstream cannot be reached, resets, or does not finish the handshake in time.
 */
export function connectUpstreamTls(options: ConnectUpstreamOptions): Promise<UpstreamTls> {
  const addr = options.resolve(options.serverName, options.port);
  const who = label(options.serverName, options.port, addr);
  return new Promise((resolve, reject) => {
    let done = false;
    const socket = tlsConnect({
      host: addr.host,
      port: addr.port,
      ...(isIP(options.serverName) ? {} : { servername: options.serverName }),
      ALPNProtocols: options.alpnProtocols.length ? options.alpnProtocols : undefined,
      secureContext: options.secureContext,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    const fail = (why: string, cause?: unknown): void => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(new MeshError(ErrorCodes.BUMP_UPSTREAM, `upstream ${who}: ${why}`, { subject: who, cause }));
    };
    socket.setTimeout(options.timeoutMs, () => fail(`no TLS handshake within ${options.timeoutMs} ms`));
    socket.once('error', (err) => fail(describeError(err), err));
    socket.once('close', () => fail('closed the connection during the TLS handshake'));
    socket.once('secureConnect', () => {
      if (done) return;
      const cert = socket.getPeerX509Certificate();
      if (!cert) {
        fail('presented no certificate');
        return;
      }
      done = true;
      socket.setTimeout(0);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      // From here on the caller owns error handling; until it attaches, an error must not crash the process.
      socket.on('error', () => undefined);
      resolve({ socket, alpn: socket.alpnProtocol ?? false, cert, problem: problemOf(socket, cert, options.serverName) });
    });
  });
}

/** A raw TCP connection to the upstream, for spliced (never bumped) connections. */
export function connectUpstreamRaw(serverName: string, port: number, resolve: UpstreamResolver, timeoutMs: number): Promise<Socket> {
  const addr = resolve(serverName, port);
  const who = label(serverName, port, addr);
  return new Promise((res, rej) => {
    const socket = netConnect({ host: addr.host, port: addr.port });
    const fail = (why: string, cause?: unknown): void => {
      socket.destroy();
      rej(new MeshError(ErrorCodes.BUMP_UPSTREAM, `upstream ${who}: ${why}`, { subject: who, cause }));
    };
    socket.setTimeout(timeoutMs, () => fail(`no connection within ${timeoutMs} ms`));
    socket.once('error', (err) => fail(describeError(err), err));
    socket.once('connect', () => {
      socket.setTimeout(0);
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      res(socket);
    });
  });
}
