import { ErrorCodes, MeshError } from '../core/index.js';

export interface PemBlock {
  label: string;
  der: Buffer;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;

export function looksLikePem(data: string | Uint8Array): boolean {
  const text = typeof data === 'string' ? data : Buffer.from(data.subarray(0, 4096)).toString('latin1');
  return text.includes('-----BEGIN ');
}

/**
 * Splits PEM text into its blocks. Text between blocks (openssl's "Certificate:" dumps, comments) is ignored, as
 * OpenSSL does; a block whose END label differs, or whose body is not base64, is an error naming `source`.
 */
export function decodePem(text: string, source = 'input'): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    const [, begin, body, end] = m;
    if (begin !== end) {
      throw new MeshError(ErrorCodes.PEM, `${source}: PEM block "BEGIN ${begin}" ends with "END ${end}"`, { subject: source });
    }
    // Encapsulated headers (Proc-Type/DEK-Info) mark legacy encrypted keys: keep them out of the base64.
    const lines = body!.split(/\r?\n/).filter((l) => l.trim() !== '' && !/^[A-Za-z-]+:/.test(l));
    const b64 = lines.join('').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0 || b64.length === 0) {
      throw new MeshError(ErrorCodes.PEM, `${source}: PEM block "${begin}" is not valid base64`, { subject: source });
    }
    blocks.push({ label: begin!, der: Buffer.from(b64, 'base64') });
  }
  if (blocks.length === 0 && text.includes('-----BEGIN ')) {
    throw new MeshError(ErrorCodes.PEM, `${source}: PEM block without a matching END line`, { subject: source });
  }
  return blocks;
}

/** Returns the DER of every block with one of `labels`; an error names the labels found instead. */
export function decodePemOf(text: string, labels: string[], source = 'input'): Buffer[] {
  const blocks = decodePem(text, source);
  const picked = blocks.filter((b) => labels.includes(b.label));
  if (picked.length === 0) {
    const found = blocks.length ? blocks.map((b) => b.label).join(', ') : 'no PEM block';
    throw new MeshError(ErrorCodes.PEM, `${source}: expected PEM ${labels.join(' or ')}, found ${found}`, { subject: source });
  }
  return picked.map((b) => b.der);
}

/** PEM with 64-column lines and a trailing newline, so that blocks concatenate into valid bundles. */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
