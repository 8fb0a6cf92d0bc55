// The live connection (Server-Sent Events at /api/stream) and its small status line.
//
// EventSource already reconnects by itself and sends Last-Event-ID, so the node replays what we missed. It gives
// up only when the node answers with an error (signed out, restarting behind a proxy...); then we open a fresh
// one after a pause, passing ?after=<last id> because a new EventSource forgets its Last-Event-ID.

const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 60_000;

/**
 * Open the stream. `handlers` maps event names ("alert", "sos", ...) to functions taking the parsed data.
 * `statusNode` shows "connecting", "live", "reconnecting" or "offline" (its data-state mirrors it for CSS).
 */
export function connectLive(handlers, statusNode) {
  if (!("EventSource" in window)) {
    setState(statusNode, "offline", "live updates are not supported by this browser");
    return { close() {} };
  }
  let source = null;
  let lastId = "";
  let retryMs = RETRY_FIRST_MS;
  let timer = null;

  const open = () => {
    const url = lastId ? `/api/stream?after=${encodeURIComponent(lastId)}` : "/api/stream";
    const es = new EventSource(url);
    source = es;
    setState(statusNode, lastId ? "reconnecting" : "connecting");
    es.addEventListener("open", () => {
      retryMs = RETRY_FIRST_MS;
      setState(statusNode, "live");
    });
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        setState(statusNode, "offline");
        clearTimeout(timer);
        timer = setTimeout(open, retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      } else {
        setState(statusNode, "reconnecting");
      }
    });
    for (const [name, handler] of Object.entries(handlers)) {
      es.addEventListener(name, (message) => {
        if (message.lastEventId) lastId = message.lastEventId;
        let data;
        try {
          data = JSON.parse(message.data);
        } catch {
          return; // a malformed message must not stop the ones after it
        }
        try {
          handler(data);
        } catch (error) {
          console.error(`live "${name}" handler failed`, error);
        }
      });
    }
  };
  open();
  return {
    close() {
      clearTimeout(timer);
      if (source) source.close();
    },
  };
}

function setState(node, state, detail = "") {
  if (!node) return;
  node.dataset.state = state;
  node.textContent = detail ? `${state}: ${detail}` : state;
}
