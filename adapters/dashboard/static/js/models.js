// The model table: each model's state from the "model_status" subscription, its memory from
// GET /v1/models/{id}/status, and load/unload buttons (a load streams its progress as server-sent events).

import { ApiError, modelPath } from "./api.js";

export class ModelTable {
  /** tbody: the table body to fill; models: the shared {id: model} state (window.dashboard.models);
   * onChange(): called when the set of models or a state changes. */
  constructor(tbody, api, models, onChange) {
    this.tbody = tbody;
    this.api = api;
    this.models = models;
    this.onChange = onChange;
  }

  model(id) {
    if (!this.models[id]) {
      this.models[id] = {
        id, status: "unknown", phase: null, progress: null, eta: null, error: null, memory: null,
        estimate: null, backend: null, engine: null, device: null, busy: null, loadedHere: false, history: [],
      };
    }
    return this.models[id];
  }

  /** A model_status update (the subscription's first update of each model, then every change). */
  update(data) {
    const model = this.model(data.model_id);
    const changed = model.status !== data.status;
    this.record(model, { status: data.status, phase: data.phase, progress: data.progress, eta: data.eta });
    model.error = data.error;
    if (data.status === "unloaded" || data.status === "failed") model.loadedHere = false;
    if (changed && data.status !== "loading") this.refresh(model.id);
    this.render(model);
    if (changed) this.onChange();
  }

  record(model, change) {
    Object.assign(model, change);
    model.history.push({ at: Date.now(), ...change });
    if (model.history.length > 200) model.history.shift();
  }

  /** Re-read a model's status document (memory, engine); failures show in its row. */
  async refresh(id) {
    const model = this.model(id);
    try {
      const status = await this.api.json("GET", `/v1/models/${modelPath(id)}/status`);
      Object.assign(model, {
        memory: status.memory_usage,
        estimate: status.estimated_memory,
        backend: status.backend,
        engine: status.engine && status.engine.name,
        device: status.engine && status.engine.device,
      });
      if (model.status === "unknown") model.status = status.status;
    } catch (error) {
      model.error = error.message;
    }
    this.render(model);
  }

  async load(id) {
    const model = this.model(id);
    model.busy = "loading";
    model.error = null;
    this.record(model, { status: "loading", phase: "queued", progress: 0, eta: null });
    this.render(model);
    try {
      for await (const event of this.api.events("POST", `/v1/models/${modelPath(id)}/load?stream=true`)) {
        if (event.type === "progress") {
          this.record(model, { status: "loading", phase: event.phase, progress: event.progress, eta: event.eta });
        } else {
          this.record(model, { status: "loaded", phase: "ready", progress: 100, eta: null });
          model.memory = event.memory_usage;
          model.loadedHere = true;
        }
        this.render(model);
      }
    } catch (error) {
      model.error = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
      this.record(model, { status: "failed", progress: null });
    }
    model.busy = null;
    this.render(model);
    this.onChange();
  }

  async unload(id) {
    const model = this.model(id);
    model.busy = "unloading";
    model.error = null;
    model.loadedHere = false;
    this.render(model);
    try {
      await this.api.json("POST", `/v1/models/${modelPath(id)}/unload`);
      this.record(model, { status: "unloaded", phase: null, progress: null, eta: null });
    } catch (error) {
      model.error = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
    }
    model.busy = null;
    await this.refresh(id);
    this.onChange();
  }

  render(model) {
    let row = this.tbody.querySelector(`tr[data-model="${CSS.escape(model.id)}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.model = model.id;
      row.innerHTML = `<td class="id"></td><td class="state"><span class="badge"></span></td>
        <td class="engine"></td><td class="memory"></td>
        <td class="progress"><progress max="100"></progress> <span class="progress-text"></span></td>
        <td class="actions"><button class="load">Load</button> <button class="unload">Unload</button></td>`;
      row.querySelector(".load").addEventListener("click", () => this.load(model.id));
      row.querySelector(".unload").addEventListener("click", () => this.unload(model.id));
      const rows = [...this.tbody.rows];
      const after = rows.find((r) => r.dataset.model > model.id);
      this.tbody.insertBefore(row, after || null);
    }
    row.querySelector(".id").textContent = model.id;
    const badge = row.querySelector(".badge");
    badge.textContent = model.status;
    badge.className = `badge state-${model.status}`;
    row.querySelector(".engine").textContent =
      [model.engine, model.backend, model.device].filter(Boolean).join(" · ") || "–";
    row.querySelector(".memory").textContent = model.memory || (model.estimate ? `~${model.estimate} (estimate)` : "–");
    const progress = row.querySelector("progress");
    const text = row.querySelector(".progress-text");
    // A load started here keeps its full bar once done, until the model leaves the loaded state.
    const finished = model.status === "loaded" && model.loadedHere;
    const shown = model.status === "loading" || finished;
    progress.hidden = !shown;
    progress.value = finished ? 100 : model.progress ?? 0;
    if (model.status === "loading") {
      text.textContent = `${Math.round(model.progress || 0)}% ${model.phase || ""}${model.eta ? `, ${model.eta} left` : ""}`;
    } else {
      text.textContent = model.error ? model.error : shown ? "loaded" : "";
    }
    text.classList.toggle("error", Boolean(model.error));
    row.querySelector(".load").disabled = Boolean(model.busy) || !["unloaded", "failed", "unknown"].includes(model.status);
    row.querySelector(".unload").disabled = Boolean(model.busy) || model.status !== "loaded";
  }
}
