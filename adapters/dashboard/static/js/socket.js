// One WebSocket to /ws: the key (an "auth" message), the metrics and model subscriptions, and playground
// chats, each told apart by its message id. Reconnects after a drop.

const RECONNECT_MS = 2000;
const METRICS_INTERVAL_MS = 1000;

export class DashboardSocket {
  /** handlers: onState(text), onAuthError(error), onMetrics(data), onModelStatus(data),
   * onSubscriptionError(id, error). */
  constructor(api, handlers) {
    this.api = api;
    this.handlers = handlers;
    this.chats = new Map();
    this.nextChat = 1;
    this.socket = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws`);
    this.socket = socket;
    this.handlers.onState("connecting");
    socket.onopen = () => {
      this.handlers.onState("live");
      if (this.api.key) this.send({ type: "auth", id: "auth", data: { api_key: this.api.key } });
      this.send({ type: "subscribe_metrics", id: "metrics", data: { interval: METRICS_INTERVAL_MS } });
      this.send({ type: "subscribe_models", id: "models" });
    };
    socket.onmessage = (message) => this.dispatch(JSON.parse(message.data));
    socket.onclose = () => {
      this.handlers.onState("disconnected");
      for (const [id, listener] of this.chats) {
        listener({ type: "error", id, data: { error: { code: "disconnected", message: "the socket closed" } } });
      }
      this.chats.clear();
      setTimeout(() => this.connect(), RECONNECT_MS);
    };
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** Start a chat; listener gets its chat_chunk frames, then one chat_done or error. Returns its id. */
  chat(body, listener) {
    const id = `chat-${this.nextChat++}`;
    this.chats.set(id, listener);
    if (!this.send({ type: "chat", id, data: body })) {
      this.chats.delete(id);
      listener({ type: "error", id, data: { error: { code: "disconnected", message: "not connected" } } });
    }
    return id;
  }

  cancel(id) {
    this.send({ type: "cancel", id });
  }

  dispatch(frame) {
    const listener = this.chats.get(frame.id);
    if (listener) {
      if (frame.type === "chat_done" || frame.type === "error") this.chats.delete(frame.id);
      listener(frame);
    } else if (frame.type === "metrics_update") {
      this.handlers.onMetrics(frame.data);
    } else if (frame.type === "model_status") {
      this.handlers.onModelStatus(frame.data);
    } else if (frame.type === "error" && frame.id === "auth") {
      this.handlers.onAuthError(frame.data.error);
    } else if (frame.type === "error") {
      this.handlers.onSubscriptionError(frame.id, frame.data.error);
    }
  }
}
