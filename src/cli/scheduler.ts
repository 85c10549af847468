import { Command } from 'commander';
import { loadConfig, schedulerConfigSchema } from '../config/index.js';
import { createLogger } from '../observability/index.js';
import { startScheduler } from '../scheduler/index.js';
import { waitForShutdownSignal } from './run.js';

interface SchedulerFlags {
  config?: string;
  listen?: string;
  metricsListen?: string;
}

export function schedulerCommand(): Command {
  return new Command('scheduler')
    .summary('run the scheduler (picks parents for every download)')
    .description(
      'Run the scheduler. Daemons announce their host to it and open one stream per download; the ' +
        'scheduler keeps a graph of the peers of each task, answers each peer with the best parents ' +
        'to fetch pieces from (or tells it to go to the source), triggers seed peers for tasks nobody ' +
        'has yet, and relays the piece digests recorded by peers that fetched from the source. ' +
        'Runs until SIGINT or SIGTERM, then closes cleanly. See docs/scheduler.md for every config key.',
    )
    .option('--config <file>', 'YAML config file (flags override its values)')
    .option('--listen <host:port>', 'gRPC listen address (default "0.0.0.0:8002"; port 0 picks a free port)')
    .option('--metrics-listen <host:port>', 'serve Prometheus /metrics and /healthy here (default: off)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  damselfly scheduler\n' +
        '  damselfly scheduler --listen 127.0.0.1:8002 --metrics-listen 127.0.0.1:8000\n' +
        '  damselfly scheduler --config /etc/damselfly/scheduler.yaml\n',
    )
    .action(async (flags: SchedulerFlags) => {
      const config = loadConfig(schedulerConfigSchema, {
        file: flags.config,
        flags: { listen: flags.listen, metricsListen: flags.metricsListen },
      });
      const logger = createLogger('scheduler');
      const scheduler = await startScheduler(config, logger);
      const signal = await waitForShutdownSignal();
      logger.info({ signal }, 'shutting down');
      await scheduler.close();
      // Daemons may keep idle HTTP/2 sessions open; they must not hold the process.
      setTimeout(() => process.exit(0), 100).unref();
    });
}
