// Reading a TLS ClientHello before TLS starts (Envoy's tls_inspector pattern): Node's SNICallback can swap only the
// certificate, so a listener reads the hello first (SNI, ALPN, versions…), picks the server, and only then starts TLS
// on the socket with that server's settings. The bytes read are pushed back into the socket, so the TLS stack (or a
// PASSTHROUGH splice) sees the connection from its first byte. This is TLS wire format (RFC 8446 §4.1.2), not ASN.1.
import type { Socket } from 'node:net';
import { ErrorCodes, MeshError } from '../core/index.js';

/** What the gateway and the bumping proxy need from a ClientHello. Numbers are the IANA code points. */
export interface ClientHello {
  /** The SNI host_name, lower-cased, without a trailing dot; undefined when the client sent none. */
  serverName: string | undefined;
  /** ALPN protocols in the client's order of preference; empty when the extension is absent. */
  alpnProtocols: string[];
  /** The record-layer-independent legacy_version (0x0303 for TLS 1.2 and 1.3 clients). */
  legacyVersion: number;
  /** From supported_versions (TLS 1.3 clients); empty when absent, GREASE values removed. */
  supportedVersions: number[];
  cipherSuites: number[];
  supportedGroups: number[];
  signatureAlgorithms: number[];
  /** The client asked for an OCSP staple (status_request). */
  statusRequest: boolean;
  /** Extension types in the order sent. */
  extensions: number[];
}

export type ClientHelloScan =
  | { status: 'incomplete' }
  | { status: 'complete'; hello: ClientHello; /** bytes of the records that carried the hello */ length: number }
  | { status: 'invalid'; reason: string; /** the first byte is not a TLS handshake record at all */ notTls: boolean };

/** TLS version code points, for readers of `supportedVersions` and `legacyVersion`. */
export const TlsVersions = { TLS1_0: 0x0301, TLS1_1: 0x0302, TLS1_2: 0x0303, TLS1_3: 0x0304 } as const;

const RECORD_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const RECORD_HEADER = 5;
const MAX_RECORD_BODY = 16384 + 2048;
/** The cap on a ClientHello's size unless the caller sets another (post-quantum key shares make ~2 KiB hellos). */
export const DEFAULT_MAX_CLIENT_HELLO = 64 * 1024;

const EXT_SERVER_NAME = 0;
const EXT_STATUS_REQUEST = 5;
const EXT_SUPPORTED_GROUPS = 10;
const EXT_SIGNATURE_ALGORITHMS = 13;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;

class Malformed extends Error {}

/** A bounds-checked cursor over one handshake message body. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos: number,
    private readonly end: number,
  ) {}
  get remaining(): number {
    return this.end - this.pos;
  }
  private need(n: number, what: string): void {
    if (this.pos + n > this.end) throw new Malformed(`${what} runs past the end of the ClientHello`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  /** A sub-reader over a length-prefixed vector (1- or 2-byte length). */
  vector(lengthBytes: 1 | 2, what: string): Reader {
    const n = lengthBytes === 1 ? this.u8(what) : this.u16(what);
    this.need(n, what);
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }
}

// GREASE (RFC 8701): 0x?A?A values that clients send to keep servers tolerant; they mean nothing.
const isGrease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);

function u16List(r: Reader, what: string): number[] {
  const out: number[] = [];
  if (r.remaining % 2 !== 0) throw new Malformed(`${what} has an odd length`);
  while (r.remaining > 0) {
    const v = r.u16(what);
    if (!isGrease(v)) out.push(v);
  }
  return out;
}

/**
 * Gathers the handshake bytes from consecutive handshake records (a hello may span records).
 * Returns undefined while more bytes are needed.
 */
function gatherHandshake(
  buf: Buffer,
  maxBytes: number,
): { message: Buffer; length: number } | { invalid: string; notTls: boolean } | undefined {
  const parts: Buffer[] = [];
  let have = 0;
  let pos = 0;
  let wanted: number | undefined;
  while (true) {
    if (buf.length - pos < RECORD_HEADER) return undefined;
    const type = buf[pos]!;
    const major = buf[pos + 1]!;
    if (type !== RECORD_HANDSHAKE || major !== 3) {
      return pos === 0
        ? { invalid: `not a TLS handshake record (first bytes 0x${buf.subarray(0, 3).toString('hex')})`, notTls: true }
        : { invalid: `record type ${type} inside the ClientHello`, notTls: false };
    }
    const len = buf.readUInt16BE(pos + 3);
    if (len === 0 || len > MAX_RECORD_BODY) return { invalid: `handshake record of ${len} bytes`, notTls: false };
    if (buf.length - pos - RECORD_HEADER < len) {
      if (pos + RECORD_HEADER + len > maxBytes) return { invalid: `ClientHello larger than ${maxBytes} bytes`, notTls: false };
      return undefined;
    }
    parts.push(buf.subarray(pos + RECORD_HEADER, pos + RECORD_HEADER + len));
    have += len;
    pos += RECORD_HEADER + len;
    if (wanted === undefined && have >= 4) {
      const first = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (first[0] !== HANDSHAKE_CLIENT_HELLO) {
        return { invalid: `first handshake message is type ${first[0]}, not ClientHello`, notTls: false };
      }
      wanted = 4 + first.readUIntBE(1, 3);
      if (wanted > maxBytes) return { invalid: `ClientHello of ${wanted} bytes is larger than ${maxBytes} bytes`, notTls: false };
    }
    if (wanted !== undefined && have >= wanted) {
      const message = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      return { message: message.subarray(0, wanted), length: pos };
    }
    if (pos >= maxBytes) return { invalid: `ClientHello larger than ${maxBytes} bytes`, notTls: false };
  }
}

function parseBody(message: Buffer): ClientHello {
  const r = new Reader(message, 4, message.length);
  const legacyVersion = r.u16('legacy_version');
  r.bytes(32, 'random');
  const sessionId = r.vector(1, 'legacy_session_id');
  if (sessionId.remaining > 32) throw new Malformed('legacy_session_id longer than 32 bytes');
  const cipherSuites = u16List(r.vector(2, 'cipher_suites'), 'cipher_suites');
  if (cipherSuites.length === 0) throw new Malformed('no cipher suites offered');
  r.vector(1, 'legacy_compression_methods');
  const hello: ClientHello = {
    serverName: undefined,
    alpnProtocols: [],
    legacyVersion,
    supportedVersions: [],
    cipherSuites,
    supportedGroups: [],
    signatureAlgorithms: [],
    statusRequest: false,
    extensions: [],
  };
  if (r.remaining === 0) return hello; // pre-TLS 1.2 clients may send no extensions at all
  const exts = r.vector(2, 'extensions');
  if (r.remaining !== 0) throw new Malformed('bytes after the extensions');
  const seen = new Set<number>();
  while (exts.remaining > 0) {
    const type = exts.u16('extension type');
    const data = exts.vector(2, `extension ${type}`);
    if (seen.has(type)) throw new Malformed(`extension ${type} sent twice`);
    seen.add(type);
    if (!isGrease(type)) hello.extensions.push(type);
    switch (type) {
      case EXT_SERVER_NAME: {
        const list = data.vector(2, 'server_name list');
        while (list.remaining > 0) {
          const nameType = list.u8('server_name type');
          const name = list.vector(2, 'server_name');
          if (nameType === 0 && hello.serverName === undefined) {
            const host = name.bytes(name.remaining, 'host_name').toString('latin1');
            // RFC 6066: ASCII host name, no trailing dot; anything else is refused rather than guessed at.
            if (!/^[\x21-\x7e]+$/.test(host)) throw new Malformed('server_name is not an ASCII host name');
            hello.serverName = host.toLowerCase().replace(/\.$/, '');
          }
        }
        break;
      }
      case EXT_ALPN: {
        const list = data.vector(2, 'ALPN list');
        while (list.remaining > 0) {
          const proto = list.vector(1, 'ALPN protocol');
          if (proto.remaining === 0) throw new Malformed('empty ALPN protocol name');
          hello.alpnProtocols.push(proto.bytes(proto.remaining, 'ALPN protocol').toString('latin1'));
        }
        break;
      }
      case EXT_SUPPORTED_VERSIONS:
        hello.supportedVersions = u16List(data.vector(1, 'supported_versions'), 'supported_versions');
        break;
      case EXT_SUPPORTED_GROUPS:
        hello.supportedGroups = u16List(data.vector(2, 'supported_groups'), 'supported_groups');
        break;
      case EXT_SIGNATURE_ALGORITHMS:
        hello.signatureAlgorithms = u16List(data.vector(2, 'signature_algorithms'), 'signature_algorithms');
        break;
      case EXT_STATUS_REQUEST:
        hello.statusRequest = true;
        break;
      default:
        break;
    }
  }
  return hello;
}

/**
 * Scans bytes received so far on a connection: `incomplete` until the whole ClientHello is there, then the hello
 * and how many bytes its records took, or `invalid` with a reason. Never throws.
 */
export function scanClientHello(buf: Buffer, maxBytes = DEFAULT_MAX_CLIENT_HELLO): ClientHelloScan {
  const gathered = gatherHandshake(buf, maxBytes);
  if (gathered === undefined) return { status: 'incomplete' };
  if ('invalid' in gathered) return { status: 'invalid', reason: gathered.invalid, notTls: gathered.notTls };
  try {
    return { status: 'complete', hello: parseBody(gathered.message), length: gathered.length };
  } catch (err) {
    if (err instanceof Malformed) return { status: 'invalid', reason: err.message, notTls: false };
    throw err;
  }
}

/** The highest TLS version the client offers (supported_versions when present, else legacy_version). */
export function maxOfferedVersion(hello: ClientHello): number {
  return hello.supportedVersions.length > 0 ? Math.max(...hello.supportedVersions) : hello.legacyVersion;
}

export interface ReadClientHelloOptions {
  /** Give up when the whole hello has not arrived within this time (a stalled or silent client). */
  timeoutMs: number;
  maxBytes?: number;
  /** Names the connection in error messages, e.g. "127.0.0.1:53122 → :8443". */
  peer?: string;
}

export interface ReadClientHelloResult {
  hello: ClientHello;
  /** Every byte read from the socket so far; already pushed back into it. */
  bytes: Buffer;
}

/**
 * Reads from `socket` until a whole ClientHello has arrived, then pushes every byte read back into the socket
 * (paused) so that a TLSSocket wrapped around it, or a splice, starts from the first byte. Rejects with
 * MESH_ERR_CLIENT_HELLO (garbage, a truncated hello, EOF) or MESH_ERR_CLIENT_HELLO_TIMEOUT; on rejection the
 * caller owns the socket and should destroy it. `err.details.bytes` holds what was read, for a caller that wants to
 * treat a non-TLS first byte differently (e.g. plain HTTP on a TLS port).
 */
export function readClientHello(socket: Socket, options: ReadClientHelloOptions): Promise<ReadClientHelloResult> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_CLIENT_HELLO;
  const who = options.peer ?? `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      socket.removeListener('error', onError);
    };
    const fail = (code: typeof ErrorCodes.CLIENT_HELLO | typeof ErrorCodes.CLIENT_HELLO_TIMEOUT, why: string, notTls = false): void => {
      if (settled) return;
      cleanup();
      socket.pause();
      reject(
        new MeshError(code, `ClientHello from ${who}: ${why}`, {
          subject: who,
          details: { bytes: Buffer.concat(chunks), notTls },
        }),
      );
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const scan = scanClientHello(all, maxBytes);
      if (scan.status === 'incomplete') {
        if (received > maxBytes + RECORD_HEADER) fail(ErrorCodes.CLIENT_HELLO, `more than ${maxBytes} bytes without a whole ClientHello`);
        return;
      }
      if (scan.status === 'invalid') {
        fail(ErrorCodes.CLIENT_HELLO, scan.reason, scan.notTls);
        return;
      }
      cleanup();
      socket.pause();
      socket.unshift(all);
      resolve({ hello: scan.hello, bytes: all });
    };
    const onEnd = (): void => fail(ErrorCodes.CLIENT_HELLO, received === 0 ? 'connection closed before any byte' : `connection closed after ${received} bytes of an incomplete ClientHello`);
    const onError = (err: Error): void => fail(ErrorCodes.CLIENT_HELLO, `socket error before the ClientHello: ${err.message}`);
    const timer = setTimeout(
      () => fail(ErrorCodes.CLIENT_HELLO_TIMEOUT, `no complete ClientHello within ${options.timeoutMs} ms (${received} bytes received)`),
      options.timeoutMs,
    );
    timer.unref?.();
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}
