import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bucketRates, peakRate, trailingRates } from '../../bench/rate-window.js';
import { barChart, escapeXml, formatNumber, lineChart, niceTicks } from '../../bench/svg.js';

describe('bench rate windows', () => {
  // 10 MB/s for 2 s, then 30 MB/s for 1 s, sampled every 250 ms.
  const samples = Array.from({ length: 13 }, (_, i) => {
    const tMs = i * 250;
    const bytes = tMs <= 2000 ? tMs * 10_000 : 20_000_000 + (tMs - 2000) * 30_000;
    return { tMs, bytes };
  });

  it('rates over the trailing window and their peak', () => {
    const rates = trailingRates(samples, 1000);
    assert.equal(rates.length, 12);
    assert.equal(rates[0]!.bytesPerS, 10_000_000); // only 250 ms of history: the first sample is the base
    assert.equal(rates.find((r) => r.tMs === 2000)!.bytesPerS, 10_000_000);
    const peak = peakRate(samples, 1000);
    assert.equal(peak.tMs, 3000);
    assert.equal(peak.bytesPerS, 30_000_000);
  });

  it('a short burst counts at its average over the window, not its instant rate', () => {
    const burst = [
      { tMs: 0, bytes: 0 },
      { tMs: 1000, bytes: 0 },
      { tMs: 1200, bytes: 4_000_000 },
      { tMs: 2200, bytes: 4_000_000 },
    ];
    // The window reaches back to the last sample at least 1 s old (t = 0): 4 MB over 1.2 s.
    assert.equal(Math.round(peakRate(burst, 1000).bytesPerS), 3_333_333);
    assert.deepEqual(peakRate([{ tMs: 0, bytes: 0 }]), { tMs: 0, bytesPerS: 0 });
  });

  it('1 s buckets interpolate the counter at the edges', () => {
    const buckets = bucketRates(samples, 1000);
    assert.deepEqual(
      buckets.map((b) => [b.tMs, b.bytesPerS]),
      [
        [1000, 10_000_000],
        [2000, 10_000_000],
        [3000, 30_000_000],
      ],
    );
    assert.deepEqual(bucketRates(samples.slice(0, 1)), []);
  });
});

describe('bench SVG writer', () => {
  it('round ticks and numbers', () => {
    assert.deepEqual(niceTicks(420), [0, 100, 200, 300, 400, 500]);
    assert.deepEqual(niceTicks(1.05), [0, 0.25, 0.5, 0.75, 1, 1.25]);
    assert.deepEqual(niceTicks(0), [0, 1]);
    assert.equal(formatNumber(0.051234), '0.0512');
    assert.equal(formatNumber(1234.5), '1235');
    assert.equal(escapeXml(`a<b & "c"`), 'a&lt;b &amp; &quot;c&quot;');
  });

  it('a grouped bar chart has one rect per value and escapes its labels', () => {
    const svg = barChart({
      title: 'T <1>',
      categories: ['N = 5', 'N = 10'],
      xLabel: 'x',
      yLabel: 'y',
      series: [
        { name: 'direct', color: '#777', values: [10, 20] },
        { name: 'p2p', color: '#27c', values: [5, null] },
      ],
      reference: { value: 12, label: 'goal' },
    });
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.match(svg, /T &lt;1&gt;/);
    assert.equal(
      (svg.match(/<rect x="[^"]+" y="[^"]+" width="[^"]+" height="[^"]+" fill="#(777|27c)"><title>/g) ?? [])
        .length,
      3,
    );
    assert.match(svg, /stroke-dasharray/);
    assert.ok(svg.trimEnd().endsWith('</svg>'));
  });

  it('a line chart draws one path per series', () => {
    const svg = lineChart({
      title: 'bandwidth',
      xLabel: 's',
      yLabel: 'MB/s',
      series: [
        {
          name: 'a',
          color: '#f00',
          points: [
            [0, 0],
            [1, 5],
            [2, 4],
          ],
        },
        {
          name: 'b',
          color: '#00f',
          points: [
            [0, 0],
            [1, 1],
          ],
        },
      ],
    });
    assert.equal((svg.match(/<path d="M/g) ?? []).length, 2);
  });
});
