import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration } from '../core/index.js';

/** A duration as users write it ("24h", "90s"), validated and turned into milliseconds. */
export const duration = z.string().transform((text, ctx) => {
  try {
    return parseDuration(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (e.g. 30s, 24h, 7d)` });
    return z.NEVER;
  }
});

/** HOST:PORT with a numeric port; IPv6 hosts in brackets. */
export const listenAddress = z.string().transform((text, ctx) => {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? m[2])! : '';
  if (!m || port > 65535 || (m[1] !== undefined && isIP(host) !== 6)) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not HOST:PORT (e.g. 127.0.0.1:15012, [::1]:15012, 0.0.0.0:0)` });
    return z.NEVER;
  }
  return { host, port };
});
export type ListenAddress = { host: string; port: number };

export const httpUrl = z.string().refine(
  (s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  },
  { message: 'expected an http:// or https:// URL' },
);
