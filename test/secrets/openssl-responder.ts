import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { opensslSerial, type Certificate } from '../../src/pki/index.js';
import { freePort } from '../../bench/free-port.js';

/** OpenSSL's index.txt time: YYMMDDHHMMSSZ. */
function indexTime(d: Date): string {
  return d.toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
}

/** One line of `openssl ocsp -index` (tab-separated: status, expiry, revocation, serial, file, subject). */
export function indexLine(cert: Certificate, revoked?: { at: Date; reason: string }): string {
  const rev = revoked ? `${indexTime(revoked.at)},${revoked.reason}` : '';
  return `${revoked ? 'R' : 'V'}\t${indexTime(cert.notAfter)}\t${rev}\t${opensslSerial(cert.serial)}\tunknown\t/CN=${cert.commonName ?? 'x'}\n`;
}

/** Whether `unshare -n` works here (root, or user namespaces), so the responder can be kept off the network. */
export function canUseNetns(): boolean {
  if (process.env.MESHCERT_TEST_NO_NETNS) return false;
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up'], { timeout: 5_000 });
  return r.status === 0;
}

const BRIDGE = `
import { connect, createServer } from 'node:net';
const [sock, port] = process.argv.slice(2);
createServer((c) => {
  const up = connect(Number(port), '127.0.0.1');
  up.setNoDelay(true);
  c.pipe(up).pipe(c);
  up.on('error', () => c.destroy());
  c.on('error', () => up.destroy());
}).listen(sock);
`;

/**
 * \`openssl ocsp\` as a live responder over an index file, for tests. Its \`-port\` binds every interface, so when
 * \`unshare -n\` is available it runs in a private network namespace (PEERS.md §3) behind a bridge: a Unix socket
 * in the test's folder, which a TCP listener of this process on 127.0.0.1:0 forwards to. Without it (no root),
 * it binds a free port directly. Either way \`url\` stays the same across stop() and start(), so it can be
 * written into certificates first.
 */
export class OpensslResponder {
  #child: ChildProcess | null = null;
  #forwarder: Server | null = null;
  private constructor(
    readonly url: string,
    private readonly port: number,
    private readonly netns: boolean,
    private readonly opts: { dir: string; index: string; caPem: string; caKey: string; nmin: number },
  ) {}

  static async create(opts: { dir: string; index: string; caPem: string; caKey: string; nmin: number }): Promise<OpensslResponder> {
    const netns = canUseNetns();
    if (!netns) {
      const port = await freePort();
      return new OpensslResponder(`http://127.0.0.1:${port}/`, port, false, opts);
    }
    writeFileSync(join(opts.dir, 'bridge.mjs'), BRIDGE);
    const sock = join(opts.dir, 'bridge.sock');
    const forwarder = createServer((c) => {
      c.setNoDelay(true);
      const up = connect(sock);
      c.pipe(up).pipe(c);
      // The responder is down: the client sees a reset, as with a stopped server.
      up.on('error', () => c.resetAndDestroy());
      c.on('error', () => up.destroy());
    });
    await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
    const port = (forwarder.address() as { port: number }).port;
    const r = new OpensslResponder(`http://127.0.0.1:${port}/`, port, true, opts);
    r.#forwarder = forwarder;
    return r;
  }

  get isolated(): boolean {
    return this.netns;
  }

  /** Starts the responder and resolves when it accepts connections. */
  async start(): Promise<void> {
    const { dir, index, caPem, caKey, nmin } = this.opts;
    const log = join(dir, 'openssl-ocsp.log');
    const args = `-index ${index} -rsigner ${caPem} -rkey ${caKey} -CA ${caPem} -nmin ${nmin} -ignore_err`;
    const sock = join(dir, 'bridge.sock');
    if (this.netns) rmSync(sock, { force: true });
    const waiting = () => (existsSync(log) ? (readFileSync(log, 'utf8').match(/waiting for OCSP client connections/g) ?? []).length : 0);
    const before = waiting();
    const script = this.netns
      ? `ip link set lo up && (openssl ocsp ${args} -port 8889 2>>${log} >/dev/null &) && exec "${process.execPath}" ${join(dir, 'bridge.mjs')} ${sock} 8889`
      : `exec openssl ocsp ${args} -port ${this.port} 2>>${log} >/dev/null`;
    this.#child = this.netns
      ? spawn('unshare', ['-n', 'bash', '-c', script], { stdio: 'ignore', detached: true })
      : spawn('bash', ['-c', script], { stdio: 'ignore', detached: true });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const up = waiting() > before && (!this.netns || existsSync(sock));
      if (up) return;
      if (Date.now() > deadline || this.#child.exitCode !== null) {
        throw new Error(`openssl ocsp did not start: ${existsSync(log) ? readFileSync(log, 'utf8') : 'no log'}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the responder (its whole process group: openssl, and the bridge in the namespace). */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (!child || child.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      /* already gone */
    }
    await gone;
    // openssl was started in the background of the group; give it a moment to release the port.
    await new Promise((r) => setTimeout(r, 100));
  }

  async close(): Promise<void> {
    await this.stop();
    await new Promise<void>((resolve) => (this.#forwarder ? this.#forwarder.close(() => resolve()) : resolve()));
  }
}
