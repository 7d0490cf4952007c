import { ErrorCodes, MeshError } from './errors.js';

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  y: 365 * 86_400_000,
};

/**
 * Parses durations as users write them in Istio and Kubernetes ("24h", "90m", "1h30m", "10y", "7d", "45s").
 * Returns milliseconds. `field` names the option or config path for the error message.
 */
export function parseDuration(text: string, field = 'duration'): number {
  const s = String(text).trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (s.length === 0 || matched !== s.length || !Number.isFinite(total)) {
    throw new MeshError(
      ErrorCodes.DURATION,
      `${field}: "${text}" is not a duration; write a number and a unit, e.g. 90s, 30m, 24h, 7d, 10y, or 1h30m`,
      { subject: field },
    );
  }
  if (total <= 0) {
    throw new MeshError(ErrorCodes.DURATION, `${field}: "${text}" must be longer than zero`, { subject: field });
  }
  return Math.round(total);
}

/** A compact human form of a duration, the inverse of parseDuration for round numbers ("24h", "10y", "1h30m"). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const [unit, size] of [
    ['y', UNIT_MS.y!],
    ['d', UNIT_MS.d!],
    ['h', UNIT_MS.h!],
    ['m', UNIT_MS.m!],
    ['s', UNIT_MS.s!],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (parts.length === 0) return `${rest}ms`;
  return parts.join('');
}
