import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// @peculiar/x509 and pkijs sign and verify through WebCrypto; point both at Node's implementation once, on import
// of the toolkit, so that no caller has to remember it.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export const subtle = webcrypto.subtle;
export { webcrypto };
