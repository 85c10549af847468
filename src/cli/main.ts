#!/usr/bin/env node
import { Command } from 'commander';
import { runMain } from './run.js';

/**
 * Each command's module is loaded only when it runs: loading all of them (the daemon, the image tools,
 * FUSE) took 0.6 s of CPU before `get` could start; `get` alone needs a third of that.
 */
const commands: Record<string, () => Promise<Command>> = {
  scheduler: async () => (await import('./scheduler.js')).schedulerCommand(),
  daemon: async () => (await import('./daemon.js')).daemonCommand(),
  get: async () => (await import('./get.js')).getCommand(),
  cluster: async () => (await import('./cluster.js')).clusterCommand(),
  image: async () => (await import('./image.js')).imageCommand(),
  mount: async () => (await import('./mount.js')).mountCommand(),
  init: async () => (await import('./init.js')).initCommand(),
};

const program = new Command('damselfly')
  .description('P2P file distribution and container image acceleration')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)');

runMain(async () => {
  const wanted = process.argv[2];
  // The top-level help (and an unknown command's error) lists every command, so only then load them all.
  const names = wanted !== undefined && Object.hasOwn(commands, wanted) ? [wanted] : Object.keys(commands);
  for (const name of names) program.addCommand(await commands[name]!());
  await program.parseAsync(process.argv);
});
