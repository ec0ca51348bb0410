// The chat playground: one conversation streamed over /ws, showing text, tool calls, log-probabilities and
// when each delta arrived.

import { formatNumber } from "./charts.js";

const EXAMPLE_TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "The current weather in a city",
      parameters: {
        type: "object",
        properties: {
          city: { type: "string", maxLength: 40 },
          unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        },
        required: ["city", "unit"],
      },
    },
  },
];

export class Playground {
  /** root: the playground section; state: window.dashboard.playground, which this keeps current. */
  constructor(root, socket, state) {
    this.root = root;
    this.socket = socket;
    this.state = state;
    this.history = [];
    this.chatId = null;
    this.field = (name) => root.querySelector(`[name="${name}"]`);
    root.querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    root.querySelector(".cancel").addEventListener("click", () => this.chatId && this.socket.cancel(this.chatId));
    root.querySelector(".clear").addEventListener("click", () => this.clear());
    root.querySelector(".example-tools").addEventListener("click", () => {
      this.field("tools").value = JSON.stringify(EXAMPLE_TOOLS, null, 2);
      this.field("tool_choice").value = "required";
    });
  }

  setModels(ids) {
    const select = this.field("model");
    const chosen = select.value;
    select.replaceChildren(...ids.map((id) => new Option(id, id)));
    if (ids.includes(chosen)) select.value = chosen;
  }

  clear() {
    this.history = [];
    this.root.querySelector(".transcript").replaceChildren();
  }

  /** The request body from the form; throws with a message for a field that does not parse. */
  body(prompt) {
    const body = {
      model: this.field("model").value,
      messages: [...this.history, { role: "user", content: prompt }],
      max_tokens: Number(this.field("max_tokens").value) || 128,
      temperature: Number(this.field("temperature").value),
    };
    const system = this.field("system").value.trim();
    if (system) body.messages.unshift({ role: "system", content: system });
    if (this.field("seed").value !== "") body.seed = Number(this.field("seed").value);
    if (this.field("logprobs").checked) Object.assign(body, { logprobs: true, top_logprobs: 3 });
    const tools = this.field("tools").value.trim();
    if (tools) {
      try {
        body.tools = JSON.parse(tools);
      } catch (error) {
        throw new Error(`tools is not valid JSON: ${error.message}`);
      }
      const choice = this.field("tool_choice").value;
      body.tool_choice = ["auto", "required", "none"].includes(choice)
        ? choice
        : { type: "function", function: { name: choice } };
    }
    return body;
  }

  send() {
    if (this.chatId) return;
    const prompt = this.field("prompt").value.trim();
    if (!prompt) return;
    let body;
    try {
      body = this.body(prompt);
    } catch (error) {
      this.showError(error.message);
      return;
    }
    this.append("user", prompt);
    const reply = this.append("assistant", "");
    const text = document.createElement("div");
    text.className = "text";
    const calls = document.createElement("div");
    calls.className = "tool-calls";
    const timing = document.createElement("canvas");
    timing.className = "timing";
    timing.height = 60;
    const stats = document.createElement("div");
    stats.className = "stats";
    reply.append(text, calls, timing, stats);
    Object.assign(this.state, {
      running: true, text: "", toolCalls: [], finishReason: null, usage: null, error: null,
      arrivals: [], ttftMs: null,
    });
    const started = performance.now();
    this.field("prompt").value = "";
    this.setRunning(true);
    this.chatId = this.socket.chat(body, (frame) => {
      const now = performance.now() - started;
      if (frame.type === "chat_chunk") this.onChunk(frame.data, now, text, calls, timing, stats);
      else this.onEnd(frame, now, stats, prompt);
    });
  }

  onChunk(data, now, text, calls, timing, stats) {
    const delta = data.delta || {};
    const tokens = data.logprobs ? data.logprobs.content.length : delta.content || delta.tool_calls ? 1 : 0;
    if (!tokens) return;
    if (this.state.ttftMs === null) this.state.ttftMs = now;
    this.state.arrivals.push(now);
    if (delta.content) {
      this.state.text += delta.content;
      if (data.logprobs) {
        for (const entry of data.logprobs.content) text.append(tokenSpan(entry));
      } else {
        text.append(delta.content);
      }
    }
    for (const piece of delta.tool_calls || []) {
      const call = (this.state.toolCalls[piece.index] ||= { id: null, name: "", arguments: "" });
      if (piece.id) call.id = piece.id;
      if (piece.function.name) call.name = piece.function.name;
      call.arguments += piece.function.arguments || "";
    }
    if (delta.tool_calls) {
      calls.replaceChildren(
        ...this.state.toolCalls.map((call) => {
          const block = document.createElement("pre");
          block.className = "tool-call";
          block.textContent = `${call.name}(${call.arguments})`;
          block.title = call.id || "";
          return block;
        }),
      );
    }
    drawTiming(timing, this.state.arrivals);
    stats.textContent = this.statsLine(now);
  }

  onEnd(frame, now, stats, prompt) {
    this.chatId = null;
    this.setRunning(false);
    this.state.running = false;
    if (frame.type === "error") {
      const error = frame.data.error || {};
      this.state.error = `${error.code}: ${error.message}`;
      stats.textContent = `refused: ${this.state.error}`;
      stats.classList.add("error");
      return;
    }
    this.state.finishReason = frame.data.finish_reason;
    this.state.usage = frame.data.usage;
    stats.textContent = this.statsLine(now);
    if (this.state.text) {
      this.history.push({ role: "user", content: prompt }, { role: "assistant", content: this.state.text });
    }
  }

  statsLine(now) {
    const s = this.state;
    const tokens = s.usage ? s.usage.completion_tokens : s.arrivals.length;
    const gaps = s.arrivals.slice(1).map((t, i) => t - s.arrivals[i]).sort((a, b) => a - b);
    const decoding = s.arrivals.length > 1 ? (s.arrivals.at(-1) - s.arrivals[0]) / 1000 : null;
    const parts = [
      s.finishReason ? `finish: ${s.finishReason}` : "streaming…",
      `${tokens} tokens`,
      `TTFT ${formatNumber(s.ttftMs, 0)} ms`,
      `gap p50 ${formatNumber(gaps[Math.floor(gaps.length / 2)], 0)} ms`,
      `${formatNumber(decoding ? (s.arrivals.length - 1) / decoding : null)} deltas/s`,
      `${formatNumber(now / 1000, 2)} s`,
    ];
    return parts.join(" · ");
  }

  append(role, content) {
    const message = document.createElement("div");
    message.className = `message ${role}`;
    const label = document.createElement("div");
    label.className = "role";
    label.textContent = role;
    message.append(label);
    if (content) {
      const text = document.createElement("div");
      text.className = "text";
      text.textContent = content;
      message.append(text);
    }
    const transcript = this.root.querySelector(".transcript");
    transcript.append(message);
    transcript.scrollTop = transcript.scrollHeight;
    return message;
  }

  showError(text) {
    const message = this.append("error", "");
    message.append(text);
  }

  setRunning(running) {
    this.root.querySelector(".send").disabled = running;
    this.root.querySelector(".cancel").disabled = !running;
  }
}

/** A token coloured by its probability, with its alternatives in the tooltip. */
function tokenSpan(entry) {
  const span = document.createElement("span");
  const probability = Math.exp(entry.logprob);
  span.className = "token";
  span.textContent = entry.token;
  span.style.backgroundColor = `hsla(${Math.round(probability * 120)}, 70%, 40%, 0.45)`;
  const alternatives = entry.top_logprobs.map((t) => `${JSON.stringify(t.token)} ${(Math.exp(t.logprob) * 100).toFixed(1)}%`);
  span.title = `p ${(probability * 100).toFixed(1)}% (logprob ${entry.logprob.toFixed(3)})\n${alternatives.join("\n")}`;
  return span;
}

/** One bar per delta: the milliseconds since the one before it (the first: time to first delta). */
function drawTiming(canvas, arrivals) {
  canvas.width = canvas.clientWidth || 300;
  const context = canvas.getContext("2d");
  const gaps = arrivals.map((t, i) => (i ? t - arrivals[i - 1] : t));
  const highest = Math.max(...gaps.slice(1), 1);
  const width = Math.max(canvas.width / Math.max(gaps.length, 1), 1);
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = "#4e9af1";
  gaps.forEach((gap, i) => {
    if (!i) return;
    const height = Math.min(gap / highest, 1) * (canvas.height - 2);
    context.fillRect(i * width, canvas.height - height, Math.max(width - 1, 1), height);
  });
}
