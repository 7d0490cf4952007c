import { Command } from 'commander';
export function crlCommand(): Command { return new Command('crl').description('make CRLs from the ledger'); }
