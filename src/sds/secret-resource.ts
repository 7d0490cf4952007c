import { createHash, type KeyObject } from 'node:crypto';
import { describeError, isMeshError } from '../core/index.js';
import { Certificate, Crl, OcspResponse, keysMatch, looksLikePem, parsePrivateKey } from '../pki/index.js';
import type { CaSide, TlsSide } from '../secrets/index.js';
import { SECRET_TYPE_URL, type DataSourceMessage, type SecretMessage } from './sds-protos.js';

/** What one SDS Secret carries, independent of protobuf: a certificate with key (and staple), or a CA bundle. */
export type SecretPayload =
  | { kind: 'tlsCertificate'; certificateChain: string; privateKey: string; ocspStaple?: Buffer | null }
  | { kind: 'validationContext'; trustedCa: string; crl?: string | null };

/** A Secret ready for the wire, with a content digest: equal digests are the same version of the resource. */
export interface SecretResource {
  name: string;
  payload: SecretPayload;
  digest: string;
  /** The Any-packed message as proto-loader (json: true) writes it. */
  message: SecretMessage & { '@type': string };
}

function digestOf(name: string, payload: SecretPayload): string {
  const h = createHash('sha256').update(`${name}\n${payload.kind}\n`);
  if (payload.kind === 'tlsCertificate') {
    h.update(payload.certificateChain).update('\n').update(payload.privateKey).update('\n');
    if (payload.ocspStaple) h.update(payload.ocspStaple);
  } else {
    h.update(payload.trustedCa).update('\n');
    if (payload.crl) h.update(payload.crl);
  }
  return h.digest('hex');
}

/**
 * Our secret → Envoy's `envoy.extensions.transport_sockets.tls.v3.Secret`: `tls_certificate` with
 * certificate_chain and private_key as inline bytes (PEM) and ocsp_staple as inline bytes (DER; Envoy refuses a
 * staple given as inline_string), or `validation_context` with trusted_ca and crl (PEM), as Istio sends them.
 */
export function secretResource(name: string, payload: SecretPayload): SecretResource {
  const bytes = (s: string | Buffer) => ({ inlineBytes: Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8') });
  const message: SecretResource['message'] =
    payload.kind === 'tlsCertificate'
      ? {
          '@type': SECRET_TYPE_URL,
          name,
          tlsCertificate: {
            certificateChain: bytes(payload.certificateChain),
            privateKey: bytes(payload.privateKey),
            ...(payload.ocspStaple && payload.ocspStaple.length ? { ocspStaple: bytes(payload.ocspStaple) } : {}),
          },
        }
      : {
          '@type': SECRET_TYPE_URL,
          name,
          validationContext: {
            trustedCa: bytes(payload.trustedCa),
            ...(payload.crl ? { crl: bytes(payload.crl) } : {}),
          },
        };
  return { name, payload, digest: digestOf(name, payload), message };
}

/** The server side of a gateway secret; the staple only when the stapling policy sends it. */
export function tlsPayload(tls: TlsSide, withStaple: boolean): SecretPayload {
  return {
    kind: 'tlsCertificate',
    certificateChain: tls.chainPem,
    privateKey: tls.keyPem,
    ...(withStaple && tls.staple ? { ocspStaple: tls.staple } : {}),
  };
}

export function validationPayload(ca: CaSide): SecretPayload {
  return { kind: 'validationContext', trustedCa: ca.pem, ...(ca.crlPem ? { crl: ca.crlPem } : {}) };
}

/** A Secret received over SDS and found usable, decoded once. */
export interface ReceivedSecret {
  name: string;
  digest: string;
  payload: SecretPayload;
  /** tlsCertificate: the chain (leaf first) and its key. */
  certificates?: Certificate[];
  privateKey?: KeyObject;
  /** validationContext: the CA certificates and CRLs. */
  caCertificates?: Certificate[];
  crls?: Crl[];
}

export type DecodedSecret = { valid: true; secret: ReceivedSecret } | { valid: false; name: string | null; errors: string[] };

function dataOf(ds: DataSourceMessage | undefined | null, field: string, errors: string[], options: { allowString: boolean }): Buffer | null {
  if (!ds) return null;
  if (ds.inlineBytes !== undefined && ds.inlineBytes !== null) return Buffer.from(ds.inlineBytes);
  if (ds.inlineString !== undefined && ds.inlineString !== null) {
    if (!options.allowString) {
      errors.push(`${field}: cannot be provided via inline_string; use inline_bytes`);
      return null;
    }
    return Buffer.from(ds.inlineString, 'utf8');
  }
  if (ds.filename || ds.environmentVariable) {
    errors.push(`${field}: only inline data sources can be used over SDS here (got ${ds.filename ? `filename ${ds.filename}` : `environment_variable ${ds.environmentVariable}`})`);
    return null;
  }
  return null;
}

function msg(err: unknown): string {
  return isMeshError(err) ? err.message : describeError(err);
}

/**
 * Decides whether a received Secret can be used, with the checks Envoy makes when it applies one (so that a
 * meshcert client NACKs what Envoy would NACK, with a reason): the resource type; a certificate chain and a
 * private key that parse and belong together; an OCSP staple given as bytes, that parses, is successful, is about
 * exactly one certificate, and names the leaf's serial; a staple present for a must-staple certificate; CA
 * certificates and CRLs that parse. Never throws: a bad resource is a list of reasons, for the NACK.
 */
export function decodeSecretResource(resource: unknown): DecodedSecret {
  const errors: string[] = [];
  if (resource === null || typeof resource !== 'object') return { valid: false, name: null, errors: ['the resource is not a message'] };
  const m = resource as SecretMessage;
  const name = typeof m.name === 'string' && m.name !== '' ? m.name : null;
  const where = name ?? '(unnamed secret)';
  if (m['@type'] !== undefined && m['@type'] !== SECRET_TYPE_URL) {
    return { valid: false, name, errors: [`${where}: resource type ${m['@type']}, expected ${SECRET_TYPE_URL}`] };
  }
  if (!name) return { valid: false, name, errors: ['a Secret without a name'] };

  if (m.tlsCertificate) {
    const t = m.tlsCertificate;
    const chainBytes = dataOf(t.certificateChain, `${where} certificate_chain`, errors, { allowString: true });
    const keyBytes = dataOf(t.privateKey, `${where} private_key`, errors, { allowString: true });
    const staple = dataOf(t.ocspStaple, `${where} ocsp_staple`, errors, { allowString: false });
    if (!chainBytes) errors.push(`${where}: tls_certificate without certificate_chain`);
    if (!keyBytes) errors.push(`${where}: tls_certificate without private_key`);
    let chain: Certificate[] | null = null;
    let key: KeyObject | null = null;
    if (chainBytes) {
      try {
        chain = Certificate.parseAll(looksLikePem(chainBytes) ? chainBytes.toString('utf8') : chainBytes, `${where} certificate_chain`);
      } catch (err) {
        errors.push(msg(err));
      }
    }
    if (keyBytes) {
      try {
        key = parsePrivateKey(looksLikePem(keyBytes) ? keyBytes.toString('utf8') : keyBytes, `${where} private_key`);
      } catch (err) {
        errors.push(msg(err));
      }
    }
    const leaf = chain?.[0];
    if (leaf && key && !keysMatch(key, leaf.publicKey)) errors.push(`${where}: the private key does not belong to the certificate (serial ${leaf.serial})`);
    if (staple && staple.length) {
      try {
        const resp = OcspResponse.parse(staple, `${where} ocsp_staple`);
        if (resp.responseStatus !== 'successful') errors.push(`${where}: OCSP response was unsuccessful (${resp.responseStatus})`);
        else if (resp.responses.length !== 1) errors.push(`${where}: OCSP response must be for one certificate only (it has ${resp.responses.length})`);
        else if (leaf && resp.responses[0]!.certId.serial !== leaf.serial) {
          errors.push(`${where}: OCSP response does not match its TLS certificate (serial ${resp.responses[0]!.certId.serial}, certificate ${leaf.serial})`);
        }
      } catch (err) {
        errors.push(msg(err));
      }
    } else if (leaf?.mustStaple) {
      errors.push(`${where}: OCSP response is required for must-staple certificate`);
    }
    if (errors.length || !chain || !key) return { valid: false, name, errors };
    const payload: SecretPayload = {
      kind: 'tlsCertificate',
      certificateChain: chainBytes!.toString('utf8'),
      privateKey: keyBytes!.toString('utf8'),
      ...(staple && staple.length ? { ocspStaple: staple } : {}),
    };
    return { valid: true, secret: { name, digest: digestOf(name, payload), payload, certificates: chain, privateKey: key } };
  }

  if (m.validationContext) {
    const v = m.validationContext;
    const caBytes = dataOf(v.trustedCa, `${where} trusted_ca`, errors, { allowString: true });
    const crlBytes = dataOf(v.crl, `${where} crl`, errors, { allowString: true });
    let cas: Certificate[] | null = null;
    let crls: Crl[] = [];
    if (caBytes) {
      try {
        cas = Certificate.parseAll(looksLikePem(caBytes) ? caBytes.toString('utf8') : caBytes, `${where} trusted_ca`);
      } catch (err) {
        errors.push(msg(err));
      }
    } else errors.push(`${where}: validation_context without trusted_ca`);
    if (crlBytes && crlBytes.length) {
      try {
        crls = Crl.parseAll(looksLikePem(crlBytes) ? crlBytes.toString('utf8') : crlBytes, `${where} crl`);
      } catch (err) {
        errors.push(msg(err));
      }
    }
    if (errors.length || !cas) return { valid: false, name, errors };
    const payload: SecretPayload = { kind: 'validationContext', trustedCa: caBytes!.toString('utf8'), ...(crlBytes && crlBytes.length ? { crl: crlBytes.toString('utf8') } : {}) };
    return { valid: true, secret: { name, digest: digestOf(name, payload), payload, caCertificates: cas, crls } };
  }
  return { valid: false, name, errors: [`${where}: neither tls_certificate nor validation_context (meshcert uses only these)`] };
}
