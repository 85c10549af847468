import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UploadAdmission } from '../../src/daemon/upload/upload-admission.js';

const MiB = 1024 * 1024;
const PIECE = 4 * MiB;

/** Sends `bytesPerSecond` for `ms`, in 50 ms steps, on the admission's clock. */
function send(admission: UploadAdmission, clock: { now: number }, bytesPerSecond: number, ms: number): void {
  for (let t = 0; t < ms; t += 50) {
    admission.sent((bytesPerSecond * 50) / 1000);
    clock.now += 50;
  }
  admission.sent(0); // closes the sample that just ended
}

describe('UploadAdmission', () => {
  it('always admits four uploads, and no more before the send rate is known', () => {
    const clock = { now: 0 };
    const admission = new UploadAdmission(() => clock.now);
    for (let i = 0; i < 4; i++) assert.equal(admission.admit(PIECE), true);
    assert.equal(admission.admit(PIECE), false);
  });

  it('on a slow link admits only what leaves within two seconds', () => {
    const clock = { now: 0 };
    const admission = new UploadAdmission(() => clock.now);
    for (let i = 0; i < 4; i++) admission.admit(PIECE);
    send(admission, clock, 5e6, 1000); // 5 MB/s: 5 MB of the 16.8 MB promised have gone
    assert.ok(Math.abs(admission.bytesPerSecond - 5e6) < 0.1e6, `rate ${admission.bytesPerSecond}`);
    assert.equal(admission.admit(PIECE), false, '11.8 MB left is 2.4 s at 5 MB/s');
    admission.ended(0); // one upload done and a second nearly
    send(admission, clock, 5e6, 1000);
    assert.equal(admission.admit(PIECE), true, 'under two seconds again');
  });

  it('on a fast link admits many', () => {
    const clock = { now: 0 };
    const admission = new UploadAdmission(() => clock.now);
    for (let i = 0; i < 4; i++) admission.admit(PIECE);
    send(admission, clock, 1e9, 1000);
    let admitted = 0;
    while (admission.admit(PIECE) && admitted < 100) admitted++;
    assert.ok(admitted >= 40, `only ${admitted} more admitted at 1 GB/s`);
  });

  it('idle time does not lower the measured rate, and unsent bytes leave the backlog', () => {
    const clock = { now: 0 };
    const admission = new UploadAdmission(() => clock.now);
    admission.admit(PIECE);
    send(admission, clock, 4e6, 1000);
    admission.ended(PIECE - 4e6); // cancelled part-way
    clock.now += 10_000; // idle
    for (let i = 0; i < 4; i++) admission.admit(PIECE);
    send(admission, clock, 10e6, 1000);
    // Samples: 4 MB/s, then (after the idle gap, which counts for nothing) 10 MB/s.
    assert.ok(admission.bytesPerSecond > 5.5e6, `rate ${admission.bytesPerSecond} after idling`);
  });
});
