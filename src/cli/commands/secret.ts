import { Command } from 'commander';
import { StapleCache, checkSecrets, formatSecretCheck, type OcspPolicy } from '../../secrets/index.js';
import { resolveDataDir } from '../data-dir.js';
import { printJson, printText, usageError } from '../output.js';
import { collectPolicy } from '../policy-option.js';

export function secretCommand(): Command {
  const secret = new Command('secret').description('gateway secrets: Kubernetes Secret manifests and mounted secret folders');
  secret
    .command('check')
    .description('check gateway secrets against their stapling policy: what meshcert and Envoy (over SDS) will be served, and why')
    .argument('<path...>', 'Secret manifests (YAML/JSON), mounted secret folders, or folders holding them')
    .option('--at <time>', 'judge at this time (ISO 8601) instead of now')
    .option('--policy <name=policy>', 'stapling policy for a secret without the annotation (mounted folders); repeatable', collectPolicy, {})
    .option('--data-dir <dir>', 'data dir of `meshcert serve`, whose fetched OCSP staples (DATA-DIR/ocsp-staples) are judged too (default: $MESHCERT_DATA_DIR or ./.meshcert)')
    .option('--no-fetched', 'judge only the staples in the secrets, not the ones meshcert serve fetched')
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      `
Exit code 0 when every secret is servable; 1 when any would be refused, withheld from Envoy, or left unused by its
policy (e.g. "MANDATORY policy but no OCSP staple"), or a file cannot be read.

Staples that \`meshcert serve\` fetched from the certificates' OCSP responders are cached in DATA-DIR/ocsp-staples;
this command reads that cache (offline, it never asks a responder), serves the fresher staple as serve would, and
shows the fetch state: last fetch and its result, failures in a row, next refresh or retry.`,
    )
    .action((paths: string[], opts: { at?: string; policy: Record<string, OcspPolicy>; json?: boolean; dataDir?: string; fetched: boolean }) => {
      const at = opts.at ? new Date(opts.at) : new Date();
      if (Number.isNaN(at.getTime())) throw usageError(`--at: "${opts.at}" is not a time; use ISO 8601`);
      const stapleCache = opts.fetched ? StapleCache.forDataDir(resolveDataDir(opts.dataDir)) : undefined;
      const report = checkSecrets(paths, { at, policies: opts.policy, ...(stapleCache ? { stapleCache } : {}) });
      if (opts.json) printJson(report);
      else printText(formatSecretCheck(report));
      if (!report.ok) process.exitCode = 1;
    });
  return secret;
}
