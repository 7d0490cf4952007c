import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Certificate } from '../pki/index.js';

/** What the listener knows about a connection when it hands it to the proxy. */
export interface ConnectionContext {
  listenerPort: number;              // the Gateway server's port.number
  serverHosts: string[];             // hosts of the Gateway server that was selected
  serverName: string | undefined;    // SNI
  alpn: string | false;              // negotiated ALPN ('h2' → HTTP/2), false for none
  tlsVersion: string | undefined;    // e.g. 'TLSv1.3'; undefined for plain HTTP
  remoteAddress: string;
  remotePort: number;
  peer: PeerIdentity | undefined;    // present only when a client certificate was verified
  /** Issue #9: async validators' verdict; the proxy sends nothing upstream until it settles; a denial → 403. */
  admission: Promise<Admission> | undefined;
  /** The gateway's own URI SANs on this connection (ISTIO_MUTUAL: its SPIFFE ID), for XFCC's `By=`. */
  localUriSans?: string[];
}

export interface PeerIdentity { chain: Certificate[]; spiffeId: string | undefined; }

export type Admission = { allowed: true } | { allowed: false; reason: string };

/** Implemented by the HTTP proxy; the listener calls it with a terminated TLS socket (or a plain socket). */
export interface ConnectionHandler { handle(socket: TLSSocket | Socket, ctx: ConnectionContext): void; }
