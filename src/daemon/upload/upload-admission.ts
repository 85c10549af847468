/**
 * How many pieces to upload at once, by the link's speed. A fixed limit (upload.concurrentLimit, 50)
 * suits a LAN, where a 4 MiB piece leaves in milliseconds; on a 40 Mbit/s link fifty pieces in flight
 * share it and each takes 40 s, while the children that asked wait on them instead of asking a parent
 * with a free link (bench/mirror.ts: hosts answered "busy" 513 times at the fixed limit, and pieces took
 * 4–8 s). So beyond MIN_UPLOADS, an upload starts only while what is already promised would leave within
 * MAX_BACKLOG_MS at the rate this host has been sending; the others are told "busy" and ask elsewhere.
 * Pure bookkeeping: the upload server reports bytes and asks.
 */
const MIN_UPLOADS = 4;
const MAX_BACKLOG_MS = 2000;
/**
 * The send rate is sampled over this long, and only over samples during which uploads ran throughout.
 * Long enough that the burst of a new upload filling its socket's kernel buffer (up to 4 MiB, gone from
 * our side at once) does not pass for link speed.
 */
const SAMPLE_MS = 1000;
const SMOOTHING = 0.3;

export class UploadAdmission {
  /** Bytes of admitted uploads not sent yet. */
  private backlog = 0;
  private uploads = 0;
  /** Bytes per ms; 0 until measured. */
  private rate = 0;
  private sample = { start: 0, bytes: 0, idle: true };

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Whether an upload of `bytes` may start now; if so, `sent` and `ended` follow. */
  admit(bytes: number): boolean {
    this.roll();
    if (this.uploads >= MIN_UPLOADS) {
      if (this.rate <= 0 || this.backlog / this.rate > MAX_BACKLOG_MS) return false;
    }
    if (this.uploads === 0) this.sample = { start: this.now(), bytes: 0, idle: false };
    this.uploads++;
    this.backlog += bytes;
    return true;
  }

  /** `bytes` of an admitted upload went out. */
  sent(bytes: number): void {
    this.roll();
    this.sample.bytes += bytes;
    this.backlog -= bytes;
  }

  /** An admitted upload is over; `unsent` of its bytes never went out. */
  ended(unsent: number): void {
    this.roll();
    this.uploads--;
    this.backlog -= unsent;
    if (this.uploads === 0) this.sample.idle = true;
  }

  /** Bytes per second this host sends while it uploads; 0 until measured. */
  get bytesPerSecond(): number {
    return this.rate * 1000;
  }

  private roll(): void {
    const now = this.now();
    const elapsed = now - this.sample.start;
    if (elapsed < SAMPLE_MS) return;
    if (!this.sample.idle) {
      const measured = this.sample.bytes / elapsed;
      this.rate = this.rate === 0 ? measured : this.rate * (1 - SMOOTHING) + measured * SMOOTHING;
    }
    this.sample = { start: now, bytes: 0, idle: this.uploads === 0 };
  }
}
