// The public face of the TLS data plane: other folders (bump, cli) import only this file.
export { readClientHello, scanClientHello, maxOfferedVersion, TlsVersions, DEFAULT_MAX_CLIENT_HELLO } from './client-hello.js';
export type { ClientHello, ClientHelloScan, ReadClientHelloOptions, ReadClientHelloResult } from './client-hello.js';
export type { ConnectionContext, PeerIdentity, Admission, ConnectionHandler } from './connection-context.js';
