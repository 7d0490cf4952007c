import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { ErrorCodes, MeshError, describeError } from '../core/index.js';
import { fieldPath } from './config-errors.js';
import { authorizationPolicySpecSchema, type AuthorizationPolicySpec } from './authorization-policy.js';
import { destinationRuleSpecSchema, type DestinationRuleSpec } from './destination-rule.js';
import { objectMetadata } from './gateway-fields.js';
import { defaultGatewayOptions, gatewayOptionsSpecSchema, type GatewayOptionsSpec } from './gateway-options.js';
import { gatewaySpecSchema, type GatewayServer, type GatewaySpec } from './istio-gateway.js';
import { virtualServiceSpecSchema, type Destination, type VirtualServiceSpec } from './virtual-service.js';
import { hostMatches } from './gateway-host-match.js';
import { tlsVersionRank } from './gateway-tls-names.js';

/** One validated document of the gateway file. */
export interface GatewayResource<Spec> {
  /** metadata.name (GatewayOptions may have none: then "options"). */
  name: string;
  namespace?: string;
  /** 1-based position in the file, for messages. */
  document: number;
  spec: Spec;
}

/** The validated content of the file `meshcert gateway -f FILE` reads. */
export interface GatewayFileConfig {
  /** The file name (or the name given to parseGatewayFile), for messages. */
  source: string;
  gateways: Array<GatewayResource<GatewaySpec>>;
  virtualServices: Array<GatewayResource<VirtualServiceSpec>>;
  destinationRules: Array<GatewayResource<DestinationRuleSpec>>;
  authorizationPolicies: Array<GatewayResource<AuthorizationPolicySpec>>;
  /** The GatewayOptions document, or the defaults when the file has none. */
  options: GatewayOptionsSpec;
  /** Things that load but are probably not what the user meant; print them. */
  warnings: string[];
}

const NETWORKING = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'];
const SECURITY = ['security.istio.io/v1', 'security.istio.io/v1beta1'];
const KINDS = {
  Gateway: { apiVersions: NETWORKING, spec: gatewaySpecSchema },
  VirtualService: { apiVersions: NETWORKING, spec: virtualServiceSpecSchema },
  DestinationRule: { apiVersions: NETWORKING, spec: destinationRuleSpecSchema },
  AuthorizationPolicy: { apiVersions: SECURITY, spec: authorizationPolicySpecSchema },
  GatewayOptions: { apiVersions: ['meshcert.dev/v1'], spec: gatewayOptionsSpecSchema },
} as const;
type Kind = keyof typeof KINDS;

/** Problems found while loading; thrown as one MeshError (CONFIG) naming each document and field. */
class Problems {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];
  constructor(readonly source: string) {}
  error(where: string, message: string): void {
    this.errors.push(`${where}: ${message}`);
  }
  warn(where: string, message: string): void {
    this.warnings.push(`${where}: ${message}`);
  }
  throwIfAny(): void {
    if (this.errors.length === 0) return;
    throw new MeshError(ErrorCodes.CONFIG, `${this.source}: invalid gateway configuration:\n  - ${this.errors.join('\n  - ')}`, {
      subject: this.source,
      details: { problems: this.errors },
    });
  }
}

const where = (r: { document: number; name: string }, kind: string, path?: string) =>
  `document ${r.document} (${kind} ${r.name})${path ? ` ${path}` : ''}`;

function zodProblems(p: Problems, label: string, prefix: ReadonlyArray<PropertyKey>, error: z.ZodError): void {
  for (const i of error.issues) {
    const path = fieldPath([...prefix, ...i.path]);
    if (i.code === 'unrecognized_keys') {
      const keys = (i as { keys: string[] }).keys;
      const at = path === '(top level)' ? '' : `${path}.`;
      p.error(label, `${at}${keys.join(', ')}: unknown field${keys.length > 1 ? 's' : ''}`);
    } else if (i.code === 'invalid_type' && / received undefined$/.test(i.message)) {
      p.error(label, `${path}: required`);
    } else {
      p.error(label, `${path}: ${i.message}`);
    }
  }
}

const envelope = z.strictObject({
  apiVersion: z.string().min(1),
  kind: z.string().min(1),
  metadata: objectMetadata.optional(),
  spec: z.unknown().optional(),
  /** kubectl output carries status; accepted and ignored. */
  status: z.unknown().optional(),
});

/** Reads YAML documents; a `kind: List` (kubectl get -o yaml) is expanded into its items. */
function yamlDocuments(text: string, source: string): unknown[] {
  let docs: unknown[];
  try {
    const parsed = parseAllDocuments(text);
    const list = Array.isArray(parsed) ? parsed : [parsed];
    docs = list.map((d, n) => {
      if (d.errors.length) throw new Error(`document ${n + 1}: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS();
    });
  } catch (err) {
    const message = `not valid YAML: ${describeError(err)}`;
    throw new MeshError(ErrorCodes.CONFIG, `${source}: ${message}`, { subject: source, cause: err, details: { problems: [message] } });
  }
  const out: unknown[] = [];
  for (const d of docs) {
    if (d && typeof d === 'object' && !Array.isArray(d) && (d as { kind?: unknown }).kind === 'List') {
      const items = (d as { items?: unknown }).items;
      if (Array.isArray(items)) out.push(...items);
      else out.push(d);
    } else {
      out.push(d);
    }
  }
  return out;
}

/**
 * Parses and validates the gateway file's text (several YAML documents). Throws one MeshError (MESH_ERR_CONFIG)
 * listing every problem as `document N (Kind name) field.path: message`; returns the config and its warnings.
 */
export function parseGatewayFile(text: string, sourceName = 'gateway file'): GatewayFileConfig {
  const p = new Problems(sourceName);
  const cfg: GatewayFileConfig = {
    source: sourceName,
    gateways: [],
    virtualServices: [],
    destinationRules: [],
    authorizationPolicies: [],
    options: defaultGatewayOptions(),
    warnings: p.warnings,
  };
  let optionsDoc: number | undefined;
  const docs = yamlDocuments(text, sourceName);
  docs.forEach((raw, i) => {
    const document = i + 1;
    if (raw === null || raw === undefined) return; // empty document (a trailing ---, comments only)
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      p.error(`document ${document}`, 'expected a resource (apiVersion, kind, metadata, spec)');
      return;
    }
    const r = raw as Record<string, unknown>;
    const kindText = typeof r.kind === 'string' ? r.kind : '(no kind)';
    const rawName = (r.metadata as { name?: unknown } | undefined)?.name;
    const label = `document ${document} (${kindText}${typeof rawName === 'string' ? ` ${rawName}` : ''})`;
    const env = envelope.safeParse(raw);
    if (!env.success) {
      zodProblems(p, label, [], env.error);
      return;
    }
    const { apiVersion, kind, metadata } = env.data;
    if (!(kind in KINDS)) {
      p.error(label, `kind: "${kind}" is not a kind of the gateway file; expected ${Object.keys(KINDS).join(', ')}`);
      return;
    }
    const k = KINDS[kind as Kind];
    if (!(k.apiVersions as readonly string[]).includes(apiVersion)) {
      const hint = apiVersion.startsWith('gateway.networking.k8s.io/') ? ' (Kubernetes Gateway API resources are not read; write Istio\'s networking.istio.io kinds)' : '';
      p.error(label, `apiVersion: "${apiVersion}" is not an apiVersion of ${kind}; expected ${k.apiVersions.join(', ')}${hint}`);
      return;
    }
    if (kind !== 'GatewayOptions' && metadata === undefined) {
      p.error(label, 'metadata.name: required');
      return;
    }
    const spec = k.spec.safeParse(env.data.spec ?? (kind === 'GatewayOptions' ? {} : undefined));
    if (!spec.success) {
      zodProblems(p, label, ['spec'], spec.error);
      return;
    }
    const res = {
      name: metadata?.name ?? 'options',
      ...(metadata?.namespace !== undefined ? { namespace: metadata.namespace } : {}),
      document,
    };
    switch (kind as Kind) {
      case 'Gateway':
        cfg.gateways.push({ ...res, spec: spec.data as GatewaySpec });
        break;
      case 'VirtualService':
        cfg.virtualServices.push({ ...res, spec: spec.data as VirtualServiceSpec });
        break;
      case 'DestinationRule':
        cfg.destinationRules.push({ ...res, spec: spec.data as DestinationRuleSpec });
        break;
      case 'AuthorizationPolicy':
        cfg.authorizationPolicies.push({ ...res, spec: spec.data as AuthorizationPolicySpec });
        break;
      case 'GatewayOptions':
        if (optionsDoc !== undefined) {
          p.error(label, `a second GatewayOptions (the first is document ${optionsDoc}); put all options in one`);
          return;
        }
        optionsDoc = document;
        cfg.options = spec.data as GatewayOptionsSpec;
        break;
    }
  });
  p.throwIfAny();
  if (cfg.gateways.length === 0) {
    p.error(sourceName, 'no Gateway document: the gateway needs at least one Gateway with servers');
  }
  crossCheck(cfg, p);
  p.throwIfAny();
  return cfg;
}

/** Reads and validates the gateway file at `path`. */
export function loadGatewayFile(path: string): GatewayFileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshError(ErrorCodes.FILE_READ, `${path}: cannot read the gateway file: ${describeError(err)}`, { subject: path, cause: err });
  }
  return parseGatewayFile(text, path);
}

type PortClass = 'http' | 'tls' | 'tcp';
const portClass = (s: GatewayServer): PortClass =>
  s.port.protocol === 'HTTPS' || s.port.protocol === 'TLS' ? 'tls' : s.port.protocol === 'TCP' ? 'tcp' : 'http';

function duplicates<T extends { name: string; document: number; namespace?: string }>(list: T[], kind: string, p: Problems): void {
  const seen = new Map<string, T>();
  for (const r of list) {
    const key = `${r.namespace ?? ''}/${r.name}`;
    const first = seen.get(key);
    if (first) p.error(where(r, kind), `same name as document ${first.document}`);
    else seen.set(key, r);
  }
}

function crossCheck(cfg: GatewayFileConfig, p: Problems): void {
  duplicates(cfg.gateways, 'Gateway', p);
  duplicates(cfg.virtualServices, 'VirtualService', p);
  duplicates(cfg.destinationRules, 'DestinationRule', p);
  duplicates(cfg.authorizationPolicies, 'AuthorizationPolicy', p);

  // Servers, grouped by port.
  const byPort = new Map<number, Array<{ gw: GatewayResource<GatewaySpec>; s: GatewayServer; i: number }>>();
  for (const gw of cfg.gateways) {
    gw.spec.servers.forEach((s, i) => {
      const at = where(gw, 'Gateway', `spec.servers[${i}]`);
      const list = byPort.get(s.port.number) ?? [];
      list.push({ gw, s, i });
      byPort.set(s.port.number, list);
      const t = s.tls;
      if (!t) return;
      if (t.mode === 'PASSTHROUGH' && s.port.protocol === 'HTTPS') {
        p.warn(at, 'protocol HTTPS with tls.mode PASSTHROUGH: the gateway does not terminate TLS here; it is handled as protocol TLS');
      }
      if (t.mode === 'PASSTHROUGH' && t.credentialName !== undefined && s.port.protocol !== 'HTTP') {
        p.warn(at, 'tls.credentialName is ignored with tls.mode PASSTHROUGH (the default when mode is absent); did you mean SIMPLE?');
      }
      if (t.cipherSuites && t.cipherSuites.length > 0) {
        if (tlsVersionRank(t.minProtocolVersion) === tlsVersionRank('TLSV1_3')) {
          p.warn(at, 'tls.cipherSuites apply to TLS 1.2 and older only; with minProtocolVersion TLSV1_3 they do not apply');
        }
        const dup = t.cipherSuites.filter((c, n) => t.cipherSuites!.indexOf(c) !== n);
        if (dup.length) p.warn(at, `tls.cipherSuites lists ${[...new Set(dup)].join(', ')} more than once`);
      }
    });
  }
  for (const [port, list] of byPort) {
    const classes = new Set(list.map((x) => portClass(x.s)));
    if (classes.size > 1) {
      const first = list[0]!;
      for (const x of list.slice(1)) {
        if (portClass(x.s) !== portClass(first.s)) {
          p.error(
            where(x.gw, 'Gateway', `spec.servers[${x.i}]`),
            `port ${port} is ${x.s.port.protocol} here but ${first.s.port.protocol} in ${where(first.gw, 'Gateway', `spec.servers[${first.i}]`)}; one port takes one kind of traffic (plain HTTP, TLS, or TCP)`,
          );
        }
      }
      continue;
    }
    const cls = [...classes][0];
    if (cls === 'tcp' && list.length > 1) {
      const x = list[1]!;
      p.error(where(x.gw, 'Gateway', `spec.servers[${x.i}]`), `port ${port} has several TCP servers; a TCP port has no host to tell them apart`);
    }
    if (cls === 'tls') {
      const hostOwner = new Map<string, { gw: GatewayResource<GatewaySpec>; s: GatewayServer; i: number }>();
      for (const x of list) {
        for (const h of x.s.hosts) {
          const first = hostOwner.get(h);
          if (!first) {
            hostOwner.set(h, x);
            continue;
          }
          if (first === x) continue;
          const a = first.s.tls?.mode;
          const b = x.s.tls?.mode;
          p.error(
            where(x.gw, 'Gateway', `spec.servers[${x.i}]`),
            a !== b
              ? `port ${port} host ${h}: conflicting TLS mode ${b} here and ${a} in ${where(first.gw, 'Gateway', `spec.servers[${first.i}]`)}`
              : `port ${port} host ${h} is already served by ${where(first.gw, 'Gateway', `spec.servers[${first.i}]`)}`,
          );
        }
      }
    }
  }

  // Destinations of VirtualServices.
  const upstreams = cfg.options.upstreams;
  const drByHost = new Map<string, GatewayResource<DestinationRuleSpec>>();
  for (const dr of cfg.destinationRules) {
    const first = drByHost.get(dr.spec.host);
    if (first) p.error(where(dr, 'DestinationRule', 'spec.host'), `host ${dr.spec.host} already has ${where(first, 'DestinationRule')}`);
    else drByHost.set(dr.spec.host, dr);
    if (!upstreams[dr.spec.host]) {
      p.warn(where(dr, 'DestinationRule', 'spec.host'), `no route goes to ${dr.spec.host} unless GatewayOptions.upstreams has an address for it`);
    }
    const tlsList = [dr.spec.trafficPolicy?.tls, ...(dr.spec.trafficPolicy?.portLevelSettings ?? []).map((x) => x.tls), ...(dr.spec.subsets ?? []).map((x) => x.trafficPolicy?.tls)];
    if (tlsList.some((t) => t?.insecureSkipVerify)) {
      p.warn(where(dr, 'DestinationRule'), 'insecureSkipVerify: the upstream certificate is not verified');
    }
  }
  const gatewayNames = new Set(cfg.gateways.map((g) => g.name));
  const checkDestination = (vs: GatewayResource<VirtualServiceSpec>, path: string, d: Destination) => {
    const at = where(vs, 'VirtualService', path);
    const up = upstreams[d.host];
    if (!up) {
      p.error(at, `destination host ${d.host} has no address: add it to GatewayOptions spec.upstreams (e.g. ${d.host}: 127.0.0.1:8080)`);
    } else if (d.port === undefined && up.port === undefined) {
      p.error(at, `destination host ${d.host} has no port: give destination.port.number or a port in GatewayOptions upstreams`);
    }
    if (d.subset !== undefined && !drByHost.get(d.host)?.spec.subsets?.some((s) => s.name === d.subset)) {
      p.error(at, `subset "${d.subset}" is not defined by a DestinationRule for host ${d.host}`);
    }
  };
  for (const vs of cfg.virtualServices) {
    const bound = vs.spec.gateways.filter((g) => g !== 'mesh');
    if (bound.length === 0) {
      p.warn(where(vs, 'VirtualService', 'spec.gateways'), 'binds to no gateway (absent gateways means "mesh"): it is not used by this gateway');
    }
    for (const g of bound) {
      if (!gatewayNames.has(g)) p.warn(where(vs, 'VirtualService', 'spec.gateways'), `gateway "${g}" is not in this file`);
    }
    const serverHosts = cfg.gateways.filter((g) => bound.includes(g.name)).flatMap((g) => g.spec.servers.flatMap((s) => s.hosts));
    vs.spec.hosts.forEach((h, i) => {
      if (serverHosts.length > 0 && !serverHosts.some((sh) => hostMatches(sh, h) || hostMatches(h, sh))) {
        p.warn(where(vs, 'VirtualService', `spec.hosts[${i}]`), `host ${h} is not among the hosts of the servers of its gateways (${bound.join(', ')})`);
      }
    });
    vs.spec.http.forEach((r, i) => r.route.forEach((d, j) => checkDestination(vs, `spec.http[${i}].route[${j}].destination`, d.destination)));
    vs.spec.tls.forEach((r, i) => r.route.forEach((d, j) => checkDestination(vs, `spec.tls[${i}].route[${j}].destination`, d.destination)));
    vs.spec.tcp.forEach((r, i) => r.route.forEach((d, j) => checkDestination(vs, `spec.tcp[${i}].route[${j}].destination`, d.destination)));
  }

  // PASSTHROUGH and TCP servers need tls/tcp routes.
  for (const gw of cfg.gateways) {
    gw.spec.servers.forEach((s, i) => {
      const passthrough = portClass(s) === 'tls' && s.tls?.mode === 'PASSTHROUGH';
      if (!passthrough && portClass(s) !== 'tcp') return;
      const routed = cfg.virtualServices.some(
        (vs) => vs.spec.gateways.includes(gw.name) && (vs.spec.tcp.length > 0 || (passthrough && vs.spec.tls.length > 0)),
      );
      if (!routed) {
        p.warn(where(gw, 'Gateway', `spec.servers[${i}]`), `${passthrough ? 'PASSTHROUGH' : 'TCP'} server on port ${s.port.number} has no ${passthrough ? 'tls or tcp' : 'tcp'} route in a VirtualService bound to ${gw.name}: its connections are closed`);
      }
    });
  }

  // GatewayOptions against the servers.
  const opts = cfg.options;
  const mutualPorts = new Set<number>();
  for (const gw of cfg.gateways) {
    for (const s of gw.spec.servers) if (s.tls?.mode === 'MUTUAL' || s.tls?.mode === 'ISTIO_MUTUAL') mutualPorts.add(s.port.number);
  }
  const optsAt = (path: string) => `GatewayOptions ${path}`;
  opts.ports.forEach((po, i) => {
    if (!byPort.has(po.port)) p.warn(optsAt(`spec.ports[${i}].port`), `no Gateway server listens on port ${po.port}`);
    if (opts.ports.findIndex((x) => x.port === po.port) !== i) p.error(optsAt(`spec.ports[${i}].port`), `port ${po.port} is listed twice`);
  });
  const seenValidation = new Set<number | undefined>();
  opts.validation.forEach((v, i) => {
    const at = optsAt(`spec.validation[${i}]`);
    if (seenValidation.has(v.port)) p.error(at, v.port === undefined ? 'more than one entry without port' : `port ${v.port} is listed twice`);
    seenValidation.add(v.port);
    if (v.port !== undefined && !mutualPorts.has(v.port)) {
      p.error(`${at}.port`, `validators check client certificates: port ${v.port} has no MUTUAL or ISTIO_MUTUAL server`);
    }
    if (v.port === undefined && mutualPorts.size === 0) p.warn(at, 'no MUTUAL or ISTIO_MUTUAL server: these validators never run');
  });
  if (opts.admin && byPort.has(opts.admin.listen.port)) {
    p.error(optsAt('spec.admin.listen'), `port ${opts.admin.listen.port} is also a Gateway server port`);
  }
}
