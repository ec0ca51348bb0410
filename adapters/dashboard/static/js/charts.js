// Live line charts on uPlot (vendored under /dashboard/vendor/uplot): time on x, one series per label.
/* global uPlot */

const PALETTE = ["#4e9af1", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7"];
const HEIGHT = 170;
const colours = new Map();

/** One colour per name (a model keeps its colour on every chart), in the order names are first seen. */
export function colourFor(name) {
  if (!colours.has(name)) colours.set(name, PALETTE[colours.size % PALETTE.length]);
  return colours.get(name);
}

export class LiveChart {
  /** container: the element to draw in; unit: shown with values; style(label) -> {stroke, dash, width} of
   * a series (by default a colour of its own); maxPoints: how much history is kept. */
  constructor(container, unit, style = (label) => ({ stroke: colourFor(label) }), maxPoints = 300) {
    this.container = container;
    this.unit = unit;
    this.style = style;
    this.maxPoints = maxPoints;
    this.time = [];
    this.series = new Map();
    this.plot = null;
    new ResizeObserver(() => this.plot && this.plot.setSize(this.size())).observe(container);
  }

  /** Add one point in time (unix seconds) with a value (or null) per series label; a new label gets a
   * series of its own, empty before now. */
  push(time, values) {
    let added = false;
    for (const label of Object.keys(values)) {
      if (!this.series.has(label)) {
        this.series.set(label, this.time.map(() => null));
        added = true;
      }
    }
    this.time.push(time);
    for (const [label, points] of this.series) points.push(values[label] ?? null);
    if (this.time.length > this.maxPoints) {
      this.time.shift();
      for (const points of this.series.values()) points.shift();
    }
    if (added || !this.plot) this.rebuild();
    else this.plot.setData(this.data());
  }

  /** The chart's points, as plain arrays: {time: [...], series: {label: [...]}}. */
  snapshot() {
    return {
      time: [...this.time],
      series: Object.fromEntries([...this.series].map(([label, points]) => [label, [...points]])),
    };
  }

  data() {
    return [this.time, ...this.series.values()];
  }

  size() {
    return { width: Math.max(this.container.clientWidth, 200), height: HEIGHT };
  }

  rebuild() {
    if (this.plot) this.plot.destroy();
    const unit = this.unit;
    const options = {
      ...this.size(),
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max || 0, 1) * 1.1] } },
      series: [
        {},
        ...[...this.series.keys()].map((label) => ({
          label,
          width: 2,
          ...this.style(label),
          value: (_u, v) => (v === null || v === undefined ? "–" : `${formatNumber(v)} ${unit}`),
        })),
      ],
      axes: [{ stroke: "#9aa4b2", grid: { stroke: "#2a3140" } }, { stroke: "#9aa4b2", grid: { stroke: "#2a3140" }, size: 55 }],
      legend: { live: false },
    };
    this.plot = new uPlot(options, this.data(), this.container);
  }
}

export function formatNumber(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Math.abs(value) >= 100) return Math.round(value).toString();
  return value.toFixed(digits);
}
