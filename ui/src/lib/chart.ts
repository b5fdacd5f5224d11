import type { TrendPoint } from '../types';

export interface Scaled {
  path: string;
  dots: { x: number; y: number; v: number; t: number }[];
  band: { y: number; h: number } | null;
  min: number;
  max: number;
}

/** Scales points (and an optional reference range) into a `w`×`h` box with `pad` margins. */
export function scale(
  points: TrendPoint[],
  w: number,
  h: number,
  pad: number,
  low: number | null = null,
  high: number | null = null,
): Scaled {
  const pts = [...points].sort((a, b) => a.t - b.t);
  const vals = pts.map((p) => p.v).concat(low ?? [], high ?? []);
  let min = vals.length ? Math.min(...vals) : 0;
  let max = vals.length ? Math.max(...vals) : 1;
  if (min === max) {
    min -= 1;
    max += 1;
  }
  const t0 = pts.length ? pts[0].t : 0;
  const t1 = pts.length ? pts[pts.length - 1].t : 1;
  const x = (t: number) => pad + (t1 === t0 ? (w - 2 * pad) / 2 : ((t - t0) / (t1 - t0)) * (w - 2 * pad));
  const y = (v: number) => h - pad - ((v - min) / (max - min)) * (h - 2 * pad);
  const dots = pts.map((p) => ({ x: x(p.t), y: y(p.v), v: p.v, t: p.t }));
  const path = dots.map((d, i) => `${i ? 'L' : 'M'}${d.x.toFixed(1)},${d.y.toFixed(1)}`).join(' ');
  let band = null;
  if (low !== null || high !== null) {
    const top = y(high ?? max);
    const bottom = y(low ?? min);
    band = { y: top, h: Math.max(0, bottom - top) };
  }
  return { path, dots, band, min, max };
}
