// The dashboard's wiring: the key check, the socket, the once-a-second /metrics scrape, the charts and the
// tables. Everything it shows is kept in window.dashboard, which the page's tests read.

import { Api, ApiError } from "./api.js";
import { colourFor, formatNumber, LiveChart } from "./charts.js";
import { MetricsHistory } from "./metrics.js";
import { ModelTable } from "./models.js";
import { Playground } from "./playground.js";
import { DashboardSocket } from "./socket.js";

const SCRAPE_MS = 1000;
const ALL_MODELS = "all models";
const WAITING = " waiting";
const $ = (selector) => document.querySelector(selector);

const state = {
  ready: false,
  connection: "starting",
  auth: { keySet: false, required: false, refused: false, message: null },
  system: null,
  metricsAllowed: null,
  live: null,
  models: {},
  playground: { running: false },
  charts: {},
};
window.dashboard = state;

const api = new Api();

function setConnection(text) {
  state.connection = text;
  const badge = $("#connection");
  badge.textContent = text;
  badge.className = `badge connection-${text.replace(/ /g, "-")}`;
}

function showNotice(selector, text) {
  const notice = $(selector);
  notice.textContent = text || "";
  notice.hidden = !text;
}

function showAuth(error) {
  state.auth.required = true;
  state.auth.refused = Boolean(api.key);
  state.auth.message = error.message;
  $("#key-form").hidden = false;
  const text = api.key
    ? `The server refused this API key (${error.code}): ${error.message}`
    : "This server needs an API key: enter one above (it is kept for this tab only).";
  showNotice("#auth-message", text);
  setConnection(api.key ? "key refused" : "key needed");
  document.querySelector("main").hidden = true;
}

function setupKeyForm() {
  state.auth.keySet = Boolean(api.key);
  $("#key-form").hidden = !api.key;
  $("#key-input").value = api.key;
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    api.saveKey($("#key-input").value);
    location.reload();
  });
  $("#key-forget").addEventListener("click", () => {
    api.saveKey("");
    location.reload();
  });
}

function showSystem(data) {
  state.system = data;
  const percent = (v) => (v === null || v === undefined ? "–" : `${formatNumber(v)}%`);
  $("#sys-cpu").textContent = percent(data.cpu);
  $("#sys-memory").textContent = percent(data.memory);
  $("#sys-gpu").textContent = data.gpu === null ? "n/a" : percent(data.gpu);
  $("#sys-gpu").title = data.gpu_unavailable_reason || "";
  $("#sys-rate").textContent = formatNumber(data.inference_rate);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillTable(selector, rows) {
  $(selector).replaceChildren(
    ...rows.map((values) => {
      const tr = document.createElement("tr");
      tr.append(...values.map((v, i) => cell(v, i ? "number" : "")));
      return tr;
    }),
  );
}

function showLive(live) {
  const ms = (v) => formatNumber(v, 1);
  const ids = Object.keys(live.models).sort();
  fillTable(
    "#engines tbody",
    ids.map((id) => {
      const m = live.models[id];
      return [
        id, formatNumber(m.tokensPerSecond), formatNumber(m.running, 0), formatNumber(m.waiting, 0),
        formatNumber(m.kvPercent), ms(m.ttft.p50), ms(m.ttft.p95), ms(m.ttft.p99), ms(m.itl.p50),
        ms(m.itl.p95), ms(m.itl.p99), `${m.requests} (${m.requestsLastMinute})`,
      ];
    }),
  );
  const counts = (map) => Object.entries(map).sort().map(([k, [total, recent]]) => [k, total, recent]);
  fillTable("#statuses tbody", counts(live.statuses));
  fillTable("#errors tbody", counts(live.errors));
}

/** The models the charts follow: those with an engine now, and those they already show. */
function chartedModels(live) {
  const shown = new Set(Object.keys(state.charts.kv.snapshot().series));
  return Object.keys(live.models).filter((id) => {
    const model = state.models[id];
    return shown.has(id) || (model && ["loaded", "loading"].includes(model.status));
  });
}

function pushCharts(time, live) {
  const models = chartedModels(live);
  const byModel = (pick) => Object.fromEntries(models.map((id) => [id, pick(live.models[id])]));
  state.charts.throughput.push(time, {
    [ALL_MODELS]: live.all.tokensPerSecond,
    ...byModel((m) => m.tokensPerSecond),
  });
  const sequences = {};
  for (const id of models) {
    sequences[`${id} running`] = live.models[id].running;
    sequences[id + WAITING] = live.models[id].waiting;
  }
  state.charts.sequences.push(time, sequences);
  state.charts.kv.push(time, byModel((m) => m.kvPercent));
  state.charts.latency.push(time, {
    "TTFT p50": live.all.ttft.p50,
    "TTFT p95": live.all.ttft.p95,
    "ITL p50": live.all.itl.p50,
    "ITL p95": live.all.itl.p95,
  });
}

async function scrape(history) {
  const time = Date.now() / 1000;
  if (state.metricsAllowed === false) {
    // Without /metrics the throughput chart still has the socket's server-wide rate.
    const rate = state.system ? state.system.inference_rate : null;
    state.charts.throughput.push(time, { [ALL_MODELS]: rate });
    return;
  }
  try {
    const live = history.add(time, await api.text("/metrics"));
    state.metricsAllowed = true;
    state.live = live;
    pushCharts(time, live);
    showLive(live);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      state.metricsAllowed = false;
      showNotice(
        "#metrics-notice",
        `Per-model charts and tables read GET /metrics, which refused this key (${error.code}): ` +
          "use a key with the admin permission. The server-wide rate comes from the WebSocket.",
      );
    }
  }
}

async function start() {
  setupKeyForm();
  // A model has one colour on every chart; the total is a dashed light line, waiting sequences dashed.
  const byModel = (label) => {
    if (label === ALL_MODELS) return { stroke: "#c8d0dc", dash: [6, 4], width: 1.5 };
    const waiting = label.endsWith(WAITING);
    const model = label.replace(/ (running|waiting)$/, "");
    return { stroke: colourFor(model), dash: waiting ? [4, 4] : undefined };
  };
  state.charts.throughput = new LiveChart($("#chart-throughput"), "tokens/s", byModel);
  state.charts.sequences = new LiveChart($("#chart-sequences"), "seqs", byModel);
  state.charts.kv = new LiveChart($("#chart-kv"), "%", byModel);
  const latencyStyle = (label) => ({
    stroke: label.startsWith("TTFT") ? "#f28e2b" : "#76b7b2",
    dash: label.endsWith("p95") ? [4, 4] : undefined,
  });
  state.charts.latency = new LiveChart($("#chart-latency"), "ms", latencyStyle);
  let listing;
  try {
    listing = await api.json("GET", "/v1/models");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showAuth(error);
    else {
      showNotice("#auth-message", `GET /v1/models failed: ${error.message}`);
      setConnection("error");
    }
    return;
  }
  const ids = listing.data.map((m) => m.id);
  const table = new ModelTable($("#models tbody"), api, state.models, () => {});
  for (const id of ids) table.model(id);
  await Promise.all(ids.map((id) => table.refresh(id)));

  const socket = new DashboardSocket(api, {
    onState: setConnection,
    onAuthError: (error) => showAuth(new ApiError(401, { error })),
    onMetrics: showSystem,
    onModelStatus: (data) => table.update(data),
    onSubscriptionError: (id, error) => {
      if (id === "models") {
        showNotice("#models-notice", `Live model states need the model_management permission (${error.message}).`);
      } else if (id === "metrics") {
        showNotice("#metrics-notice", `The metrics subscription was refused: ${error.message}`);
      }
    },
  });
  const playground = new Playground($("#playground"), socket, state.playground);
  const loaded = ids.filter((id) => state.models[id].status === "loaded");
  playground.setModels([...loaded, ...ids.filter((id) => !loaded.includes(id))]);
  socket.connect();

  const history = new MetricsHistory();
  await scrape(history);
  setInterval(() => scrape(history), SCRAPE_MS);
  state.ready = true;
}

start();
