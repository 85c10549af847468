/** A bad flag value or a config file `damselfly init` cannot safely change: the CLI prints one line. */
export class InitError extends Error {
  readonly code = 'EINIT';
}
