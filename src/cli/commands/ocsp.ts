import { Command } from 'commander';
export function ocspCommand(): Command { return new Command('ocsp').description('make and check OCSP responses'); }
