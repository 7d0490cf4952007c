import { generateKeyPair as generateKeyPairCb, type KeyObject } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { importPublicKey, spkiDer, type KeyType } from '../pki/index.js';

const generate = promisify(generateKeyPairCb);

/** A key ready for minting: the public half already known to the template builder, the private half as PEM for TLS. */
export interface PooledKey {
  type: KeyType;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** PKCS#8 PEM for tls.createSecureContext (which takes no KeyObject); exported off the hot path. */
  keyPem: string;
  /** How many mimics carry this key. */
  uses: number;
}

/** A TLS context with the key already loaded and no certificate yet: minting only sets the mimic into it. */
export interface BlankContext {
  key: PooledKey;
  context: SecureContext;
}

/**
 * Sets the certificate into a blank context. OpenSSL 3.0 makes creating an SSL_CTX and decoding a PEM key cost
 * most of a mint (several times the signature); a context made ahead of time with its key leaves only this step.
 * Node's SecureContext exposes its native context as `.context` (what tls itself calls setCert on); should that
 * ever change, the caller falls back to a whole new context.
 */
export function setContextCertificate(blank: BlankContext, certPem: string): SecureContext | null {
  const native = (blank.context as unknown as { context?: { setCert?: (pem: string) => void } }).context;
  if (typeof native?.setCert !== 'function') return null;
  native.setCert(certPem);
  return blank.context;
}

export interface KeyPoolOptions {
  /** Fresh keys kept ready per key type (default 8). */
  size?: number;
  /** Key types filled at start (default ec-p256 and rsa-2048, the common upstream kinds). */
  prefill?: KeyType[];
  /** Blank TLS contexts kept ready per key type (default 16; 0 = make the context while minting). */
  blankContexts?: number;
  onGenerated?: (type: KeyType, ms: number) => void;
}

async function makeKey(type: KeyType): Promise<PooledKey> {
  let pair: { privateKey: KeyObject; publicKey: KeyObject };
  switch (type) {
    case 'ec-p256':
      pair = await generate('ec', { namedCurve: 'prime256v1' });
      break;
    case 'ec-p384':
      pair = await generate('ec', { namedCurve: 'secp384r1' });
      break;
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      pair = await generate('rsa', { modulusLength: Number(type.slice(4)), publicExponent: 0x10001 });
      break;
    case 'ed25519':
      pair = await generate('ed25519');
      break;
  }
  // importPublicKey remembers the SPKI bytes for the template builder, so certifying this key never exports it again.
  const publicKey = pair.publicKey.asymmetricKeyType === 'rsa' ? pair.publicKey : importPublicKey(spkiDer(pair.publicKey));
  return { type, privateKey: pair.privateKey, publicKey, keyPem: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, uses: 0 };
}

interface Slot {
  blanks: BlankContext[];
  fresh: PooledKey[];
  /** Keys already handed out, reused round-robin when no fresh key is left (never a key generation inline). */
  used: PooledKey[];
  next: number;
  filling: Promise<void> | null;
}

/**
 * Pre-made mimic keys per key type. `take` never generates a key when the type has any key: it hands out a fresh
 * one, or re-uses one of the last `size` keys handed out while the pool refills in the background (node's async
 * generateKeyPair runs on the libuv thread pool, so even RSA-4096 generation never blocks the event loop). Only the
 * very first request for a type that was not prefilled waits for one generation.
 */
export class KeyPool {
  readonly size: number;
  readonly #slots = new Map<KeyType, Slot>();
  readonly #onGenerated: KeyPoolOptions['onGenerated'];
  readonly #blankTarget: number;
  #blankTimer: NodeJS.Immediate | null = null;
  #closed = false;
  generated = 0;
  reused = 0;

  constructor(options: KeyPoolOptions = {}) {
    this.size = Math.max(1, options.size ?? 8);
    this.#onGenerated = options.onGenerated;
    this.#blankTarget = options.blankContexts ?? 16;
    for (const t of options.prefill ?? ['ec-p256', 'rsa-2048']) this.#refill(t);
  }

  #slot(type: KeyType): Slot {
    let s = this.#slots.get(type);
    if (!s) {
      s = { blanks: [], fresh: [], used: [], next: 0, filling: null };
      this.#slots.set(type, s);
    }
    return s;
  }

  /** Starts (or returns the running) background refill of `type` up to `size` fresh keys. */
  #refill(type: KeyType): Promise<void> {
    const s = this.#slot(type);
    if (s.filling) return s.filling;
    s.filling = (async () => {
      try {
        while (!this.#closed && s.fresh.length < this.size) {
          const started = performance.now();
          const key = await makeKey(type);
          this.generated++;
          this.#onGenerated?.(type, performance.now() - started);
          s.fresh.push(key);
          this.#scheduleBlanks();
        }
      } finally {
        s.filling = null;
      }
    })();
    return s.filling;
  }

  /**
   * Makes blank contexts one per event-loop turn (each takes the main thread for a moment: OpenSSL has no async
   * API for it), so that connections in flight are never held up for more than one.
   */
  #scheduleBlanks(): void {
    if (this.#blankTimer || this.#closed || this.#blankTarget === 0) return;
    this.#blankTimer = setImmediate(() => {
      this.#blankTimer = null;
      for (const s of this.#slots.values()) {
        if (s.blanks.length >= this.#blankTarget) continue;
        // Spread the contexts over the keys: fresh keys first, then the ones in use.
        const keys = [...s.fresh, ...s.used];
        if (keys.length === 0) continue;
        const key = keys[s.blanks.length % keys.length]!;
        s.blanks.push({ key, context: createSecureContext({ key: key.keyPem }) });
        this.#scheduleBlanks();
        return;
      }
    });
    this.#blankTimer.unref?.();
  }

  /** A blank context (with its key) of `type`, or null when none is ready. */
  takeBlank(type: KeyType): BlankContext | null {
    const s = this.#slots.get(type);
    const blank = s?.blanks.pop() ?? null;
    if (blank) {
      blank.key.uses++;
      // A fresh key handed out through its context moves to the used list.
      const i = s!.fresh.indexOf(blank.key);
      if (i >= 0) {
        s!.fresh.splice(i, 1);
        s!.used.push(blank.key);
        if (s!.used.length > this.size) s!.used.shift();
      }
    }
    this.#scheduleBlanks();
    return blank;
  }

  /** Waits until every prefilled type has at least one key (for tests and benchmarks). */
  async ready(types: KeyType[] = [...this.#slots.keys()]): Promise<void> {
    for (const t of types) if (!this.available(t)) await this.#refill(t);
  }

  available(type: KeyType): boolean {
    const s = this.#slots.get(type);
    return !!s && (s.fresh.length > 0 || s.used.length > 0);
  }

  /** A key of `type` without waiting, or null when the pool has none yet (the caller then awaits `take`). */
  takeNow(type: KeyType): PooledKey | null {
    const s = this.#slot(type);
    const fresh = s.fresh.pop();
    let key: PooledKey | undefined;
    if (fresh) {
      key = fresh;
      s.used.push(fresh);
      if (s.used.length > this.size) s.used.shift();
    } else if (s.used.length > 0) {
      key = s.used[s.next++ % s.used.length]!;
      this.reused++;
    }
    if (s.fresh.length < Math.ceil(this.size / 2)) void this.#refill(type).catch(() => undefined);
    if (key) key.uses++;
    return key ?? null;
  }

  async take(type: KeyType): Promise<PooledKey> {
    for (;;) {
      if (this.#closed) throw new Error('the key pool is closed');
      const key = this.takeNow(type);
      if (key) return key;
      await this.#refill(type);
    }
  }

  stats(): Record<string, { fresh: number; used: number; blankContexts: number }> {
    const out: Record<string, { fresh: number; used: number; blankContexts: number }> = {};
    for (const [t, s] of this.#slots) out[t] = { fresh: s.fresh.length, used: s.used.length, blankContexts: s.blanks.length };
    return out;
  }

  close(): void {
    this.#closed = true;
    if (this.#blankTimer) clearImmediate(this.#blankTimer);
    this.#blankTimer = null;
  }
}
