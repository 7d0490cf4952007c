// reflect-metadata must load before @peculiar/x509 (tsyringe) in the process entry file.
import 'reflect-metadata';
import { Command, CommanderError } from 'commander';
import { EXIT, reportError } from './output.js';
import { caCommand } from './commands/ca.js';
import { certCommand } from './commands/cert.js';
import { crlCommand } from './commands/crl.js';
import { ocspCommand } from './commands/ocsp.js';
import { secretCommand } from './commands/secret.js';
import { demoCommand } from './commands/demo.js';
import { serveCommand } from './commands/serve.js';
import { agentCommand } from './commands/agent.js';
import { gatewayCommand } from './commands/gateway.js';
import { envoyConfigCommand } from './commands/envoy-config.js';
import { bumpCommand } from './commands/bump.js';

export function buildProgram(): Command {
  const program = new Command('meshcert')
    .description(
      'The certificate system of a service mesh: a mesh CA with SPIFFE identities, revocation (CRL, OCSP), OCSP staples kept fresh, Envoy SDS, a workload agent, a TLS gateway, a TLS-bumping egress proxy, and offline PKI tools.',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false });
  program.addCommand(demoCommand());
  program.addCommand(serveCommand());
  program.addCommand(agentCommand());
  program.addCommand(gatewayCommand());
  program.addCommand(envoyConfigCommand());
  program.addCommand(bumpCommand());
  program.addCommand(caCommand());
  program.addCommand(certCommand());
  program.addCommand(crlCommand());
  program.addCommand(ocspCommand());
  program.addCommand(secretCommand());
  program.addHelpText(
    'after',
    `
Exit codes: 0 ok, 1 failure, 2 usage error.
Environment: MESHCERT_DATA_DIR (default data dir), MESHCERT_LOG_LEVEL.`,
  );
  // Every subcommand reports through exceptions so that exit codes stay ours.
  const override = (cmd: Command): void => {
    cmd.exitOverride();
    // addCommand() does not pass settings down: every command points to its --help after a usage error.
    cmd.showHelpAfterError('(run with --help for usage)');
    cmd.commands.forEach(override);
  };
  override(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? EXIT.OK : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.OK;
      // Help printed because no subcommand was given (`meshcert cert`) is a usage error; `meshcert help` is not.
      if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      // Commander already printed its message.
      return EXIT.USAGE;
    }
    return reportError(err, json);
  }
}

const code = await main(process.argv.slice(2));
process.exitCode = code;
