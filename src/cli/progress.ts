import { SingleBar } from 'cli-progress';

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A terminal progress bar for a byte count, with a phase label; shown only on a TTY. */
export class ByteProgress {
  private readonly bar = new SingleBar({
    format: ' {phase} {bar} {percentage}% | {done}/{size} | {speed} | ETA {eta_formatted}',
    hideCursor: true,
    stream: process.stderr,
  });
  private phase = '';
  private started = Date.now();

  static forTerminal(enabled = true): ByteProgress | null {
    return enabled && process.stderr.isTTY ? new ByteProgress() : null;
  }

  show(phase: string, done: number, total: number): void {
    if (phase !== this.phase) {
      if (this.phase) this.bar.stop();
      this.phase = phase;
      this.started = Date.now();
      this.bar.start(total, done, this.payload(done, total));
      return;
    }
    this.bar.setTotal(total);
    this.bar.update(done, this.payload(done, total));
  }

  stop(): void {
    if (this.phase) this.bar.stop();
    this.phase = '';
  }

  private payload(done: number, total: number) {
    const rate = done / Math.max((Date.now() - this.started) / 1000, 0.001);
    return {
      phase: this.phase.padEnd(8),
      done: humanBytes(done),
      size: humanBytes(total),
      speed: `${humanBytes(rate)}/s`,
    };
  }
}
