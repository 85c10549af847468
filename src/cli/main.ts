#!/usr/bin/env node
import { Command } from 'commander';
import { clusterCommand } from './cluster.js';
import { daemonCommand } from './daemon.js';
import { getCommand } from './get.js';
import { imageCommand } from './image.js';
import { mountCommand } from './mount.js';
import { runMain } from './run.js';
import { schedulerCommand } from './scheduler.js';

const program = new Command('damselfly')
  .description('P2P file distribution and container image acceleration')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)');

program.addCommand(schedulerCommand());
program.addCommand(daemonCommand());
program.addCommand(getCommand());
program.addCommand(clusterCommand());
program.addCommand(imageCommand());
program.addCommand(mountCommand());

runMain(() => program.parseAsync(process.argv));
