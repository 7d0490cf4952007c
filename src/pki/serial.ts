import { randomBytes } from 'node:crypto';
import { ErrorCodes, MeshError } from '../core/index.js';

// randomBytes per call costs ~5 µs, a large share of a certificate built from a template: draw 4 KiB at a time.
let pool = Buffer.alloc(0);
let poolOffset = 0;

/**
 * A random positive 128-bit serial (CA/Browser Forum asks for at least 64 random bits), as lowercase hex with no
 * leading zeros. The first byte is kept in 0x01..0x7f so that the DER INTEGER is exactly 16 bytes and positive.
 */
export function randomSerial(): string {
  if (poolOffset + 16 > pool.length) {
    pool = randomBytes(4096);
    poolOffset = 0;
  }
  // A copy, so that the pool's bytes are never handed out twice or modified in place.
  const b = Buffer.from(pool.subarray(poolOffset, poolOffset + 16));
  poolOffset += 16;
  b[0] = b[0]! & 0x7f;
  if (b[0] === 0) b[0] = 1;
  // Canonical form: a first byte under 0x10 would otherwise start with a '0' nibble.
  return b.toString('hex').replace(/^0/, '');
}

/**
 * Accepts a serial as users paste it: hex in any case, with or without colons or spaces, with or without 0x, with
 * leading zeros as `openssl x509 -serial` prints them. Returns the canonical form: lowercase, no leading zeros.
 */
export function normalizeSerial(input: string, field = 'serial'): string {
  const raw = String(input).trim();
  let hex = raw.replace(/[:\s]/g, '');
  if (/^0x/i.test(hex)) hex = hex.slice(2);
  if (hex.length === 0 || !/^[0-9a-fA-F]+$/.test(hex)) {
    throw new MeshError(ErrorCodes.SERIAL, `${field}: "${raw}" is not a hexadecimal serial number (e.g. 1F:A2:… or 1fa2…)`, {
      subject: field,
    });
  }
  hex = hex.toLowerCase().replace(/^0+/, '');
  return hex === '' ? '0' : hex;
}

/** A serial from the DER INTEGER content bytes (two's complement, big-endian), canonical hex. */
export function serialFromBytes(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes).toString('hex').replace(/^0+/, '');
  return hex === '' ? '0' : hex;
}

/** The serial as OpenSSL prints it (`openssl x509 -serial`): uppercase, even length. */
export function opensslSerial(serial: string): string {
  const hex = normalizeSerial(serial);
  return (hex.length % 2 ? `0${hex}` : hex).toUpperCase();
}

/** Hex of the minimal DER INTEGER content for a positive serial (a 00 is prepended when the top bit is set). */
export function serialToDerHex(serial: string): string {
  let hex = normalizeSerial(serial);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  return hex;
}
