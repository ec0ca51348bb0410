// GET /metrics (Prometheus text) turned into the dashboard's live figures: rates between two scrapes and
// latency percentiles over the last minute, from the engine's histograms.

const WINDOW_S = 60;
// The dashboard's own polling is left out of the request counts, which would otherwise only grow.
const OWN_ENDPOINTS = new Set(["metrics", "dashboard", "dashboard_asset"]);

/** [{name, labels, value}] of every sample in an exposition text. */
export function parsePrometheus(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** Prometheus' histogram_quantile: linear within the bucket holding the q-th observation. buckets maps
 * each upper bound (le) to its cumulative count; null when there are no observations. */
export function histogramQuantile(buckets, q) {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) || 0;
  if (!total) return null;
  const rank = q * total;
  let previousBound = 0;
  let previousCount = 0;
  for (const bound of bounds) {
    const count = buckets.get(bound);
    if (count >= rank) {
      if (bound === Infinity) return previousBound;
      const inBucket = count - previousCount;
      return previousBound + (bound - previousBound) * (inBucket ? (rank - previousCount) / inBucket : 0);
    }
    previousBound = bound;
    previousCount = count;
  }
  return previousBound;
}

function sumBy(samples, name, key, filter = () => true) {
  const sums = new Map();
  for (const s of samples) {
    if (s.name !== name || !filter(s.labels)) continue;
    const k = key(s.labels);
    sums.set(k, (sums.get(k) || 0) + s.value);
  }
  return sums;
}

/** Histogram buckets (le -> count) per model, and for all models together under "". */
function bucketsByModel(samples, histogram) {
  const byModel = new Map([["", new Map()]]);
  for (const s of samples) {
    if (s.name !== `${histogram}_bucket`) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    for (const model of [s.labels.model, ""]) {
      if (!byModel.has(model)) byModel.set(model, new Map());
      const buckets = byModel.get(model);
      buckets.set(le, (buckets.get(le) || 0) + s.value);
    }
  }
  return byModel;
}

function subtractBuckets(now, before) {
  const difference = new Map();
  for (const [le, count] of now) difference.set(le, count - ((before && before.get(le)) || 0));
  return difference;
}

function percentiles(now, before) {
  if (!now) return { p50: null, p95: null, p99: null };
  const buckets = subtractBuckets(now, before);
  const ms = (q) => {
    const seconds = histogramQuantile(buckets, q);
    return seconds === null ? null : seconds * 1000;
  };
  return { p50: ms(0.5), p95: ms(0.95), p99: ms(0.99) };
}

/** One scrape's figures, kept so later scrapes can be compared with it. */
function reading(time, samples) {
  const model = (labels) => labels.model;
  return {
    time,
    generated: sumBy(samples, "inferno_engine_generated_tokens_total", model),
    running: sumBy(samples, "inferno_engine_running_sequences", model),
    waiting: sumBy(samples, "inferno_engine_waiting_sequences", model),
    kv: sumBy(samples, "inferno_engine_kv_cache_usage_ratio", model),
    ttft: bucketsByModel(samples, "inferno_engine_time_to_first_token_seconds"),
    itl: bucketsByModel(samples, "inferno_engine_inter_token_latency_seconds"),
    requests: sumBy(samples, "inferno_requests_total", (l) => l.model || "(no model)", (l) => !OWN_ENDPOINTS.has(l.endpoint)),
    statuses: sumBy(samples, "inferno_request_duration_seconds_count", (l) => l.status, (l) => !OWN_ENDPOINTS.has(l.endpoint)),
    errors: sumBy(samples, "inferno_core_errors_total", (l) => l.code),
  };
}

/** The scrapes of the last minute and what they say now. */
export class MetricsHistory {
  constructor() {
    this.readings = [];
  }

  /** Add a scrape taken at time (seconds) and return the live figures:
   * {models: {id: {tokensPerSecond, running, waiting, kvPercent, ttft, itl, requests, requestsLastMinute}},
   *  all: {tokensPerSecond, ttft, itl}, statuses: {code: [total, lastMinute]}, errors: {code: [total, lastMinute]}} */
  add(time, text) {
    const now = reading(time, parsePrometheus(text));
    const previous = this.readings[this.readings.length - 1];
    this.readings.push(now);
    while (this.readings.length > 2 && time - this.readings[0].time > WINDOW_S) this.readings.shift();
    const oldest = this.readings[0];
    const rate = (counter, id) => {
      if (!previous || now.time <= previous.time) return null;
      return Math.max((counter(now).get(id) || 0) - (counter(previous).get(id) || 0), 0) / (now.time - previous.time);
    };
    const ids = new Set([...now.generated.keys(), ...now.running.keys(), ...now.kv.keys(), ...now.requests.keys()]);
    const models = {};
    for (const id of ids) {
      models[id] = {
        tokensPerSecond: rate((r) => r.generated, id),
        running: now.running.get(id) ?? null,
        waiting: now.waiting.get(id) ?? null,
        kvPercent: now.kv.has(id) ? now.kv.get(id) * 100 : null,
        ttft: percentiles(now.ttft.get(id), oldest.ttft.get(id)),
        itl: percentiles(now.itl.get(id), oldest.itl.get(id)),
        requests: now.requests.get(id) || 0,
        requestsLastMinute: (now.requests.get(id) || 0) - (oldest.requests.get(id) || 0),
      };
    }
    const rates = Object.values(models).map((m) => m.tokensPerSecond).filter((r) => r !== null);
    const withLastMinute = (counts, before) =>
      Object.fromEntries([...counts].map(([k, v]) => [k, [v, v - (before.get(k) || 0)]]));
    return {
      models,
      all: {
        tokensPerSecond: previous ? rates.reduce((a, b) => a + b, 0) : null,
        ttft: percentiles(now.ttft.get(""), oldest.ttft.get("")),
        itl: percentiles(now.itl.get(""), oldest.itl.get("")),
      },
      statuses: withLastMinute(now.statuses, oldest.statuses),
      errors: withLastMinute(now.errors, oldest.errors),
    };
  }
}
