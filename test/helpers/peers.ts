/**
 * A real-peer test (openssl, certtool, python3-grpcio, fixed ports) may skip on a developer's machine that lacks
 * the peer, with the reason; in CI (CI=true) a missing peer is a failure, never a silent pass.
 */
export function skipUnlessCi(reason: string | null | false | undefined): string | false {
  if (!reason) return false;
  if (process.env.CI) throw new Error(`${reason}; CI must provide every peer (.ci/run installs them)`);
  return reason;
}
