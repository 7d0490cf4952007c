import { resolve } from 'node:path';
import { ErrorCodes, MeshError, isMeshError, silentLogger, systemClock, type Clock, type Logger } from '../core/index.js';
import { SpiffeId, TrustDomain } from '../pki/index.js';
import { CertificateAuthority } from './authority.js';
import { caExists, hasSettings, readSettings } from './ca-files.js';
import { initRootCa } from './ca-init.js';

export interface OpenTrustDomainCaOptions {
  /** The config field that names the folder (or the trust domain, for a default folder): errors start with it. */
  field: string;
  clock?: Clock;
  logger?: Logger;
}

export interface OpenedTrustDomainCa {
  ca: CertificateAuthority;
  /**
   * How the folder was found: `created` (it held no CA: a self-signed root was made now), `meshcert` (a CA with its
   * ca.json), `istio` (Istio's four cacerts files alone, used as they are, without writing anything there).
   */
  source: 'created' | 'meshcert' | 'istio';
}

/**
 * The signing CA of a trust domain other than the server's main one, from its own folder with Istio's file names:
 * made on first start when the folder holds no CA, else loaded as it is. A folder whose ca.json (or, without one,
 * whose CA certificate's SPIFFE ID) names another trust domain is a CONFIG error starting with `field`: a trust
 * domain never signs with the CA of another.
 */
export async function openTrustDomainCa(folder: string, trustDomain: string, options: OpenTrustDomainCaOptions): Promise<OpenedTrustDomainCa> {
  const { field } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const td = TrustDomain.parse(trustDomain, field).name;
  const where = resolve(folder);
  let source: OpenedTrustDomainCa['source'];
  try {
    if (!caExists(folder)) {
      await initRootCa(folder, { trustDomain: td, clock });
      source = 'created';
    } else if (hasSettings(folder)) {
      const settings = readSettings(folder);
      if (settings.trustDomain !== td) {
        throw new MeshError(
          ErrorCodes.CONFIG,
          `${field}: ${where} holds the CA of trust domain "${settings.trustDomain}" (its ca.json says so), not of "${td}"; give each trust domain its own CA folder`,
          { subject: field },
        );
      }
      source = 'meshcert';
    } else {
      source = 'istio';
    }
    const ca = await CertificateAuthority.load(folder, { clock, logger, trustDomain: td });
    // Istio's files carry no trust domain, but a CA certificate may name one in a SPIFFE ID SAN: it must agree.
    const named = ca.cert.spiffeIds.map((s) => SpiffeId.tryParse(s)).find((r) => r.ok)?.value.trustDomain;
    if (source === 'istio' && named !== undefined && named !== td) {
      throw new MeshError(
        ErrorCodes.CONFIG,
        `${field}: the CA certificate in ${where} names trust domain "${named}" (its SPIFFE ID), not "${td}"; give each trust domain its own CA folder`,
        { subject: field },
      );
    }
    return { ca, source };
  } catch (err) {
    if (!isMeshError(err) || err.message.startsWith(`${field}:`)) throw err;
    // The loader's message names the file at fault; the user also needs the config entry that pointed there.
    throw new MeshError(err.code, `${field}: ${err.message}`, { subject: field, cause: err, ...(err.details ? { details: err.details } : {}) });
  }
}
