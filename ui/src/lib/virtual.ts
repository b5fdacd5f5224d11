/** The rows a virtualized list draws: those in view plus `overscan` either side. */
export function visibleRange(
  scrollTop: number,
  viewport: number,
  rowHeight: number,
  count: number,
  overscan = 8,
): { start: number; end: number } {
  if (count === 0) return { start: 0, end: 0 };
  const view = viewport > 0 ? viewport : rowHeight * 20;
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const start = Math.max(0, first - overscan);
  const end = Math.min(count, first + Math.ceil(view / rowHeight) + overscan);
  return { start, end };
}
