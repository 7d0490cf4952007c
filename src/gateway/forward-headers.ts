import type { HeaderOperations } from '../config/index.js';

/** A header map as Node gives it (lowercase names). Changed in place: the proxy forwards the object it received. */
export type HeaderMap = Record<string, string | string[] | number | undefined>;

/** Headers that belong to one connection and never cross a proxy (RFC 9110 §7.6.1; forbidden in HTTP/2). */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings'];

/**
 * Removes hop-by-hop headers, the ones named in `Connection`, and (`keepTe`) any `te` other than `trailers`,
 * which gRPC needs end to end. `keepUpgrade` keeps `connection`/`upgrade` for a WebSocket handshake.
 */
export function stripHopByHop(h: HeaderMap, keepUpgrade = false): void {
  const conn = h.connection;
  if (conn !== undefined) {
    for (const token of String(conn).split(',')) {
      const t = token.trim().toLowerCase();
      if (t && t !== 'upgrade' && t !== 'close' && t !== 'keep-alive') delete h[t];
    }
  }
  for (const name of HOP_BY_HOP) {
    if (keepUpgrade && (name === 'connection' || name === 'upgrade')) continue;
    if (h[name] !== undefined) delete h[name];
  }
  if (keepUpgrade && h.connection !== undefined) h.connection = 'upgrade';
  const te = h.te;
  if (te !== undefined && String(te).trim().toLowerCase() !== 'trailers') delete h.te;
}

/** Removes HTTP/2 pseudo-headers (`:method`…) so that the map can go out as HTTP/1.1. */
export function stripPseudo(h: HeaderMap): void {
  if (h[':method'] !== undefined) delete h[':method'];
  if (h[':path'] !== undefined) delete h[':path'];
  if (h[':authority'] !== undefined) delete h[':authority'];
  if (h[':scheme'] !== undefined) delete h[':scheme'];
  if (h[':status'] !== undefined) delete h[':status'];
  if (h[':protocol'] !== undefined) delete h[':protocol'];
}

/** Istio's header operations: `set` replaces, `add` appends a value, `remove` deletes (names case-insensitive). */
export function applyHeaderOps(h: HeaderMap, ops: NonNullable<HeaderOperations['request']> | undefined): void {
  if (!ops) return;
  if (ops.set) for (const [k, v] of Object.entries(ops.set)) h[k.toLowerCase()] = v;
  if (ops.add) {
    for (const [k, v] of Object.entries(ops.add)) {
      const name = k.toLowerCase();
      const cur = h[name];
      if (cur === undefined) h[name] = v;
      else if (Array.isArray(cur)) h[name] = [...cur, v];
      else h[name] = name === 'set-cookie' ? [String(cur), v] : `${cur},${v}`;
    }
  }
  if (ops.remove) for (const k of ops.remove) delete h[k.toLowerCase()];
}

/** Appends the client address to `x-forwarded-for` (as Envoy does at the edge with use_remote_address). */
export function appendForwardedFor(h: HeaderMap, remoteAddress: string): void {
  const cur = h['x-forwarded-for'];
  h['x-forwarded-for'] = cur === undefined || cur === '' ? remoteAddress : `${Array.isArray(cur) ? cur.join(', ') : cur}, ${remoteAddress}`;
}
