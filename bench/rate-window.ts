/**
 * Rates from samples of a byte counter (e.g. a veth's rx_bytes read every 200 ms): the rate over a
 * trailing window at each sample, and its peak. Pure functions, no I/O.
 */

export interface CounterSample {
  /** Milliseconds since the start of the measurement. */
  tMs: number;
  /** Counter value (bytes since the start of the measurement). */
  bytes: number;
}

export interface RatePoint {
  tMs: number;
  bytesPerS: number;
}

/**
 * The rate over the trailing `windowMs` at each sample: (bytes_i − bytes_j) / (t_i − t_j), j the latest
 * sample at least `windowMs` before i (the first sample while there is none that old). Samples must be in
 * time order; the first sample gets no point.
 */
export function trailingRates(samples: CounterSample[], windowMs = 1000): RatePoint[] {
  const out: RatePoint[] = [];
  let j = 0;
  for (let i = 1; i < samples.length; i++) {
    const ti = samples[i]!.tMs;
    while (j + 1 < i && samples[j + 1]!.tMs <= ti - windowMs) j++;
    const dt = ti - samples[j]!.tMs;
    if (dt <= 0) continue;
    out.push({ tMs: ti, bytesPerS: ((samples[i]!.bytes - samples[j]!.bytes) * 1000) / dt });
  }
  return out;
}

/** The highest trailing-window rate, and when; 0 at 0 for fewer than two samples. */
export function peakRate(samples: CounterSample[], windowMs = 1000): RatePoint {
  let best: RatePoint = { tMs: 0, bytesPerS: 0 };
  for (const p of trailingRates(samples, windowMs)) if (p.bytesPerS > best.bytesPerS) best = p;
  return best;
}

/**
 * The rate in consecutive `stepMs` buckets ([0, step), [step, 2·step), …), from the counter interpolated
 * linearly at each bucket edge: a compact series for plots and result files.
 */
export function bucketRates(samples: CounterSample[], stepMs = 1000): RatePoint[] {
  if (samples.length < 2) return [];
  const at = (t: number): number => {
    let k = 0;
    while (k + 1 < samples.length && samples[k + 1]!.tMs < t) k++;
    const a = samples[k]!;
    const b = samples[Math.min(k + 1, samples.length - 1)]!;
    if (b.tMs <= a.tMs || t <= a.tMs) return a.bytes;
    if (t >= b.tMs) return b.bytes;
    return a.bytes + ((b.bytes - a.bytes) * (t - a.tMs)) / (b.tMs - a.tMs);
  };
  const end = samples.at(-1)!.tMs;
  const out: RatePoint[] = [];
  for (let t = samples[0]!.tMs; t < end; t += stepMs) {
    const t2 = Math.min(t + stepMs, end);
    out.push({ tMs: t2, bytesPerS: ((at(t2) - at(t)) * 1000) / (t2 - t) });
  }
  return out;
}
