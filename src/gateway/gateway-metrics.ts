// The gateway's Prometheus metrics, in Envoy's spirit: handshakes by result, one counter per failure reason
// (Envoy's ssl.fail_verify_*, ssl.connection_error, ocsp_staple_*), staples served and omitted, connections, and the
// expiry of every certificate in use by credential.
import { Counter, Gauge, Registry } from 'prom-client';

export class GatewayMetrics {
  readonly registry: Registry;
  readonly connections: Counter<'port' | 'mode'>;
  readonly activeConnections: Gauge<'port'>;
  readonly handshakes: Counter<'port' | 'result'>;
  readonly handshakeFailures: Counter<'port' | 'reason'>;
  readonly staples: Counter<'result'>;
  readonly passthrough: Counter<'port' | 'result'>;
  readonly certificateExpiry: Gauge<'credential' | 'serial'>;
  readonly configReloads: Counter<'result'>;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const r = [registry];
    this.connections = new Counter({ name: 'meshcert_gateway_connections_total', help: 'Downstream connections accepted', labelNames: ['port', 'mode'], registers: r });
    this.activeConnections = new Gauge({ name: 'meshcert_gateway_connections_active', help: 'Downstream connections open', labelNames: ['port'], registers: r });
    this.handshakes = new Counter({ name: 'meshcert_gateway_handshakes_total', help: 'TLS handshakes by result (success, failure)', labelNames: ['port', 'result'], registers: r });
    this.handshakeFailures = new Counter({
      name: 'meshcert_gateway_handshake_failures_total',
      help: 'Failed handshakes and refused client certificates, one series per reason (client_hello, no_server, staple_policy, cert_revoked, unable_to_get_crl, trust_domain, timeout, …)',
      labelNames: ['port', 'reason'],
      registers: r,
    });
    this.staples = new Counter({ name: 'meshcert_gateway_ocsp_staples_total', help: 'OCSP status requests answered with a staple (served) or without (omitted)', labelNames: ['result'], registers: r });
    this.passthrough = new Counter({ name: 'meshcert_gateway_passthrough_total', help: 'PASSTHROUGH connections spliced to an upstream, by result', labelNames: ['port', 'result'], registers: r });
    this.certificateExpiry = new Gauge({
      name: 'meshcert_gateway_certificate_expiry_timestamp_seconds',
      help: 'notAfter of the certificate served for each credential (Unix seconds)',
      labelNames: ['credential', 'serial'],
      registers: r,
    });
    this.configReloads = new Counter({ name: 'meshcert_gateway_config_reloads_total', help: 'Gateway file reloads by result (applied, rejected)', labelNames: ['result'], registers: r });
  }

  handshakeFailed(port: number, reason: string): void {
    this.handshakes.inc({ port: String(port), result: 'failure' });
    this.handshakeFailures.inc({ port: String(port), reason });
  }
}
