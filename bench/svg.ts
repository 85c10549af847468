/**
 * A small SVG writer for benchmark figures in docs/images: grouped bar charts and line charts with axes,
 * ticks, a legend and optional value labels. Pure string building, no dependencies; the output is plain
 * SVG 1.1 that GitHub and browsers render as an image.
 */

export interface BarSeries {
  name: string;
  color: string;
  /** One value per category; null leaves a gap. */
  values: (number | null)[];
}

export interface BarChartOptions {
  title: string;
  /** The groups along the x axis, e.g. `N = 5`. */
  categories: string[];
  xLabel: string;
  yLabel: string;
  series: BarSeries[];
  /** Text above each bar (default: the value with up to 3 significant digits). */
  valueLabel?: (value: number, series: BarSeries, category: number) => string;
  /** A dashed horizontal line, e.g. a goal. */
  reference?: { value: number; label: string };
  width?: number;
  height?: number;
}

export interface LineSeries {
  name: string;
  color: string;
  /** [x, y] in data units, in x order. */
  points: Array<[number, number]>;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** A dashed horizontal line, e.g. a rate limit. */
  reference?: { value: number; label: string };
  width?: number;
  height?: number;
}

const MARGIN = { left: 70, right: 20, top: 44, bottom: 52 };
const FONT = 'font-family="Helvetica, Arial, sans-serif"';
const AXIS = '#444';
const GRID = '#e3e3e3';

export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!,
  );
}

/** Up to `digits` significant digits, without trailing zeros (1200 → "1200", 0.0512 → "0.0512"). */
export function formatNumber(value: number, digits = 3): string {
  if (value === 0 || !Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 10 ** digits) return String(Math.round(value));
  return String(Number(value.toPrecision(digits)));
}

/** Evenly spaced round ticks (1, 2, 2.5 or 5 × 10^k apart) from 0 to at least `max`. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let i = 0; ; i++) {
    const t = Number((i * step).toPrecision(12));
    ticks.push(t);
    if (t >= max) break;
  }
  return ticks;
}

const n = (x: number) => Number(x.toFixed(1));

interface Frame {
  width: number;
  height: number;
  plotW: number;
  plotH: number;
  yMax: number;
  y(v: number): number;
  parts: string[];
}

function frame(
  title: string,
  xLabel: string,
  yLabel: string,
  dataMax: number,
  width: number,
  height: number,
): Frame {
  const ticks = niceTicks(dataMax);
  const yMax = ticks.at(-1)!;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const y = (v: number) => MARGIN.top + plotH - (v / yMax) * plotH;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  for (const t of ticks) {
    const ty = n(y(t));
    parts.push(
      `<line x1="${MARGIN.left}" y1="${ty}" x2="${MARGIN.left + plotW}" y2="${ty}" stroke="${GRID}"/>`,
      `<text x="${MARGIN.left - 6}" y="${ty + 4}" text-anchor="end" fill="${AXIS}">${formatNumber(t)}</text>`,
    );
  }
  const midY = MARGIN.top + plotH / 2;
  parts.push(
    `<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${MARGIN.top + plotH}" stroke="${AXIS}"/>`,
    `<line x1="${MARGIN.left}" y1="${MARGIN.top + plotH}" x2="${MARGIN.left + plotW}" y2="${MARGIN.top + plotH}" stroke="${AXIS}"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${height - 10}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text x="16" y="${midY}" text-anchor="middle" transform="rotate(-90 16 ${midY})">${escapeXml(yLabel)}</text>`,
  );
  return { width, height, plotW, plotH, yMax, y, parts };
}

const REFERENCE_COLOR = '#c0392b';

/** The dashed line; its label goes into the legend, where it cannot collide with bars or values. */
function reference(f: Frame, ref: { value: number; label: string } | undefined): void {
  if (!ref) return;
  const ry = n(f.y(ref.value));
  f.parts.push(
    `<line x1="${MARGIN.left}" y1="${ry}" x2="${MARGIN.left + f.plotW}" y2="${ry}" stroke="${REFERENCE_COLOR}" stroke-dasharray="6 4"/>`,
  );
}

interface LegendItem {
  name: string;
  color: string;
  kind: 'box' | 'line' | 'dashed';
}

function legend(f: Frame, items: LegendItem[]): void {
  const x = MARGIN.left + 12;
  const w = 34 + Math.max(0, ...items.map((i) => i.name.length)) * 6.6;
  // A white box, so the legend stays readable over a line or bar.
  f.parts.push(
    `<rect x="${x - 6}" y="${MARGIN.top + 1}" width="${n(w)}" height="${items.length * 18 + 4}" fill="#fff" fill-opacity="0.85"/>`,
  );
  items.forEach((item, i) => {
    const y = MARGIN.top + 10 + i * 18;
    f.parts.push(
      item.kind === 'box'
        ? `<rect x="${x}" y="${y - 6}" width="14" height="12" fill="${item.color}"/>`
        : `<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${item.color}" stroke-width="${item.kind === 'line' ? 2.5 : 1.5}"${item.kind === 'dashed' ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${x + 24}" y="${y + 4}">${escapeXml(item.name)}</text>`,
    );
  });
}

function legendItems(
  series: Array<{ name: string; color: string }>,
  kind: 'box' | 'line',
  ref: { label: string } | undefined,
): LegendItem[] {
  const items: LegendItem[] = series.map((s) => ({ name: s.name, color: s.color, kind }));
  if (ref) items.push({ name: ref.label, color: REFERENCE_COLOR, kind: 'dashed' });
  return items;
}

/** Grouped bars: one group per category, one bar per series in each group. */
export function barChart(o: BarChartOptions): string {
  const all = o.series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const f = frame(
    o.title,
    o.xLabel,
    o.yLabel,
    Math.max(...all, o.reference?.value ?? 0, 0) * 1.08,
    o.width ?? 640,
    o.height ?? 380,
  );
  const groupW = f.plotW / Math.max(1, o.categories.length);
  const barW = (groupW * 0.7) / Math.max(1, o.series.length);
  const label = o.valueLabel ?? ((v: number) => formatNumber(v));
  o.categories.forEach((cat, c) => {
    const gx = MARGIN.left + c * groupW + groupW * 0.15;
    o.series.forEach((s, k) => {
      const v = s.values[c];
      if (v === null || v === undefined) return;
      const x = n(gx + k * barW);
      const top = n(f.y(v));
      const h = n(MARGIN.top + f.plotH - top);
      f.parts.push(
        `<rect x="${x}" y="${top}" width="${n(barW - 2)}" height="${h}" fill="${s.color}"><title>${escapeXml(`${s.name}, ${cat}: ${label(v, s, c)}`)}</title></rect>`,
        `<text x="${n(x + (barW - 2) / 2)}" y="${n(top - 4)}" text-anchor="middle" font-size="11">${escapeXml(label(v, s, c))}</text>`,
      );
    });
    f.parts.push(
      `<text x="${n(MARGIN.left + (c + 0.5) * groupW)}" y="${MARGIN.top + f.plotH + 18}" text-anchor="middle">${escapeXml(cat)}</text>`,
    );
  });
  reference(f, o.reference);
  legend(f, legendItems(o.series, 'box', o.reference));
  f.parts.push('</svg>');
  return `${f.parts.join('\n')}\n`;
}

/** Lines over a numeric x axis starting at 0. */
export function lineChart(o: LineChartOptions): string {
  const ys = o.series.flatMap((s) => s.points.map((p) => p[1]));
  const xs = o.series.flatMap((s) => s.points.map((p) => p[0]));
  const f = frame(
    o.title,
    o.xLabel,
    o.yLabel,
    // Headroom above the highest line for the legend, which must not hide a line running along the top.
    Math.max(...ys, o.reference?.value ?? 0, 0) * (1.15 + 0.1 * (o.series.length + (o.reference ? 1 : 0))),
    o.width ?? 640,
    o.height ?? 380,
  );
  const xTicks = niceTicks(Math.max(...xs, 0), 8);
  const xMax = xTicks.at(-1)!;
  const x = (v: number) => MARGIN.left + (v / xMax) * f.plotW;
  for (const t of xTicks) {
    f.parts.push(
      `<line x1="${n(x(t))}" y1="${MARGIN.top + f.plotH}" x2="${n(x(t))}" y2="${MARGIN.top + f.plotH + 4}" stroke="${AXIS}"/>`,
      `<text x="${n(x(t))}" y="${MARGIN.top + f.plotH + 18}" text-anchor="middle" fill="${AXIS}">${formatNumber(t)}</text>`,
    );
  }
  for (const s of o.series) {
    if (s.points.length === 0) continue;
    const d = s.points.map(([px, py], i) => `${i === 0 ? 'M' : 'L'}${n(x(px))} ${n(f.y(py))}`).join(' ');
    f.parts.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"><title>${escapeXml(s.name)}</title></path>`,
    );
  }
  reference(f, o.reference);
  legend(f, legendItems(o.series, 'line', o.reference));
  f.parts.push('</svg>');
  return `${f.parts.join('\n')}\n`;
}
