// The validated gateway file (src/config) turned into what the listeners run: per port, its servers with their
// mode, credentials and full TLS settings (the server's tls block over GatewayOptions' per-port and mesh-wide
// curves, signature algorithms and CRL mode), plus every credential name the config uses (an SDS store subscribes
// to exactly these) and the TCP/TLS route lookup for PASSTHROUGH and terminated TLS servers.
import { GatewayRouter, pickDestination, type GatewayFileConfig } from '../config/index.js';
import { ROOT_CA, WORKLOAD_CERT } from './credential-store.js';
import type { ListenerDeps, PortPlan, ServerMode, ServerPlan } from './listener.js';

export interface GatewayPlan {
  ports: PortPlan[];
  /** Serving and validation names for the downstream side and DestinationRule origination. */
  credentials: { serving: string[]; validation: string[] };
  /** DestinationRule credentialNames and whether ISTIO_MUTUAL origination is used. */
  upstreamCredentials: string[];
  istioMutualUpstream: boolean;
  routeTcp: ListenerDeps['routeTcp'];
  warnings: string[];
}

function collectCredentialNames(value: unknown, out: Set<string>, istio: { used: boolean }): void {
  if (Array.isArray(value)) {
    for (const v of value) collectCredentialNames(v, out, istio);
    return;
  }
  if (!value || typeof value !== 'object') return;
  const o = value as Record<string, unknown>;
  if (typeof o.mode === 'string' && o.mode === 'ISTIO_MUTUAL') istio.used = true;
  if (typeof o.credentialName === 'string') out.add(o.credentialName);
  for (const v of Object.values(o)) collectCredentialNames(v, out, istio);
}

export function buildGatewayPlan(config: GatewayFileConfig, options: { defaultBind: string }): GatewayPlan {
  const router = new GatewayRouter(config);
  const o = config.options;
  const warnings: string[] = [];
  const serving = new Set<string>();
  const validation = new Set<string>();
  const ports: PortPlan[] = [];
  for (const port of router.ports()) {
    const refs = router.serversOnPort(port);
    const portOptions = o.ports.find((p) => p.port === port);
    const servers: ServerPlan[] = refs.map((ref) => {
      const s = ref.server;
      const t = s.tls;
      let mode: ServerMode;
      if (s.port.protocol === 'TCP') mode = 'TCP';
      else if (s.port.protocol !== 'HTTPS' && s.port.protocol !== 'TLS') mode = 'PLAIN';
      else mode = (t?.mode ?? 'PASSTHROUGH') as ServerMode;
      let credentialName: string | undefined;
      let validationName: string | undefined;
      if (mode === 'SIMPLE' || mode === 'MUTUAL') credentialName = t?.credentialName;
      if (mode === 'MUTUAL') validationName = t?.credentialName;
      if (mode === 'ISTIO_MUTUAL') {
        credentialName = WORKLOAD_CERT;
        validationName = ROOT_CA;
      }
      if (credentialName) serving.add(credentialName);
      if (validationName) validation.add(validationName);
      return {
        id: ref.id,
        gateway: ref.gateway,
        port,
        protocol: s.port.protocol,
        hosts: [...s.hosts],
        mode,
        credentialName,
        validationName,
        tls: {
          minProtocolVersion: t?.minProtocolVersion,
          maxProtocolVersion: t?.maxProtocolVersion,
          cipherSuites: t?.cipherSuites,
          ecdhCurves: portOptions?.ecdhCurves ?? o.ecdhCurves,
          signatureAlgorithms: portOptions?.signatureAlgorithms ?? o.signatureAlgorithms,
        },
        subjectAltNames: t?.subjectAltNames,
        onlyVerifyLeafCertCrl: portOptions?.onlyVerifyLeafCertCrl ?? o.onlyVerifyLeafCertCrl,
        trustDomain: o.trustDomain,
        alpn: s.port.protocol === 'HTTPS' ? ['h2', 'http/1.1'] : undefined,
      };
    });
    const bind = refs.find((r) => r.server.bind)?.server.bind ?? options.defaultBind;
    ports.push({ port, bind, servers });
  }

  const upstream = new Set<string>();
  const istio = { used: false };
  for (const dr of config.destinationRules) collectCredentialNames(dr.spec, upstream, istio);
  for (const n of upstream) {
    serving.add(n);
    validation.add(n);
  }
  if (istio.used) {
    serving.add(WORKLOAD_CERT);
    validation.add(ROOT_CA);
  }

  const routeTcp: ListenerDeps['routeTcp'] = (server, serverName) => {
    const r = router.routeStream(server.port, server.mode === 'TCP' ? undefined : serverName);
    if (!r) return { error: `no tls or tcp route of a VirtualService bound to ${server.gateway} matches port ${server.port}${serverName ? ` and SNI ${serverName}` : ''}` };
    const d = pickDestination(r.destinations);
    if (!d) return { error: `route of ${r.virtualService.name} has no destination with weight` };
    return { target: { host: d.address.host, port: d.address.port }, destination: `${d.host}:${d.port}` };
  };

  return {
    ports,
    credentials: { serving: [...serving].sort(), validation: [...validation].sort() },
    upstreamCredentials: [...upstream].sort(),
    istioMutualUpstream: istio.used,
    routeTcp,
    warnings,
  };
}
