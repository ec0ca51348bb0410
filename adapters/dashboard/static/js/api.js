// REST calls to this server with the operator's API key (kept in sessionStorage: gone when the tab closes).

const KEY_STORAGE = "inferno.apiKey";

/** A refusal in the seed's error body: {"error": {"type", "code", "message", "details"}}. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.details = error.details || {};
  }
}

/** A model id as a URL path: ids may hold "/", which the model routes accept as it is. */
export function modelPath(modelId) {
  return modelId.split("/").map(encodeURIComponent).join("/");
}

export class Api {
  constructor() {
    this.key = sessionStorage.getItem(KEY_STORAGE) || "";
  }

  saveKey(key) {
    this.key = key.trim();
    if (this.key) sessionStorage.setItem(KEY_STORAGE, this.key);
    else sessionStorage.removeItem(KEY_STORAGE);
  }

  async fetch(method, path, body) {
    const headers = {};
    if (this.key) headers.Authorization = `Bearer ${this.key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      throw new ApiError(response.status, await response.json().catch(() => null));
    }
    return response;
  }

  async json(method, path, body) {
    return (await this.fetch(method, path, body)).json();
  }

  async text(path) {
    return (await this.fetch("GET", path)).text();
  }

  /** The events of a server-sent event stream, one parsed JSON object each. A route that answers at once
   * with JSON instead (a load of a model that is already loaded) gives that body as its only event. */
  async *events(method, path) {
    const response = await this.fetch(method, path);
    if (!(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      yield await response.json();
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += value;
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = event.startsWith("data: ") ? event.slice(6) : "";
        if (data && data !== "[DONE]") {
          const parsed = JSON.parse(data);
          if (parsed.error) throw new ApiError(200, parsed);
          yield parsed;
        }
      }
    }
  }
}
