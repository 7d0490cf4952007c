import type { Certificate, KeyUsageName } from '../pki/index.js';

/** Problems that make a certificate unfit to be a signing CA; empty when it is fit. */
export function caCertificateProblems(cert: Certificate, source: string): string[] {
  const problems: string[] = [];
  const bc = cert.basicConstraints;
  if (!bc?.ca) problems.push(`${source}: basicConstraints CA:TRUE is missing, so it cannot sign certificates`);
  const ku: KeyUsageName[] | null = cert.keyUsage;
  if (ku && !ku.includes('keyCertSign')) problems.push(`${source}: keyUsage lacks keyCertSign`);
  return problems;
}
