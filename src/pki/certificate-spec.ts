import type { KeyObject } from 'node:crypto';
import type { San } from './general-names.js';
import type { KeyUsageName } from './oids.js';

/**
 * Everything a new certificate says, independent of how it is encoded. A CertificateBuilder turns a spec into
 * signed DER; the generic builder uses @peculiar/x509, a faster one may assemble DER itself. Callers (the CA, the
 * CLI) only ever produce specs, so the builder can be swapped without touching them.
 */
export interface CertificateSpec {
  /** Lowercase hex, positive. */
  serial: string;
  /** RFC 4514 text ("CN=foo, O=bar") or attribute pairs in order, most significant first. */
  subject: string | Array<[string, string]>;
  notBefore: Date;
  notAfter: Date;
  publicKey: KeyObject;
  basicConstraints?: { ca: boolean; pathLen?: number | null; critical?: boolean };
  keyUsage?: KeyUsageName[];
  /** EKU names (serverAuth, clientAuth, ocspSigning…) or OIDs. */
  extKeyUsage?: string[];
  sans?: San[];
  /** Marks the SAN extension critical, as RFC 5280 requires when the subject is empty (SPIFFE SVIDs). */
  sanCritical?: boolean;
  crlDistributionPoints?: string[];
  ocspUrls?: string[];
  caIssuersUrls?: string[];
  mustStaple?: boolean;
  ocspNoCheck?: boolean;
  nameConstraints?: {
    permitted?: Partial<Record<'dns' | 'ip' | 'uri' | 'email', string[]>>;
    excluded?: Partial<Record<'dns' | 'ip' | 'uri' | 'email', string[]>>;
  };
  /** Extra extensions as DER, for what the spec does not model. */
  extraExtensions?: Array<{ oid: string; critical: boolean; value: Uint8Array }>;
}

/** The issuing side: the CA certificate's subject and key id, and its signing key. Self-signed when `certificate` is absent. */
export interface Issuer {
  /** DER of the issuer Name, copied verbatim into the new certificate's issuer field. */
  subjectDer: Buffer;
  /** The issuer's subject key identifier (hex), written as the new certificate's AKI. */
  keyId: string;
}
