// Server-sent events over fetch(): the one SSE client every page uses.
//
// EventSource cannot POST (a chat message starts its stream with a POST) nor
// set headers, so streams are read with fetch() and a streaming reader:
//
//   for await (const frame of stream(`/api/jobs/${id}/stream`, { signal })) {
//     view.frame(frame);                 // frame = { id, type, data }
//     if (frame.type === "done") break;  // leaving the loop closes the connection
//   }
//
// Each server frame is `data: {"type": KIND, "data": ...}` with `id: <seq>`
// (a job stream's `id: <runId>:<seq>`); the loop gets { id, type: KIND, data }
// where id is a number for `<seq>`, the string for `<runId>:<seq>` (see
// frameOrder) and null without one. Comments (`: ping`) and `retry:` are
// handled here.
//
// Options:
//   method, body    POST with a JSON body (default GET)
//   lastEventId     resume after this id (sent as the Last-Event-ID header)
//   signal          an AbortSignal: aborting ends the loop quietly
//   reconnect       "onError" (the GET default): a dropped connection is
//                   reopened with Last-Event-ID = the last id seen, after the
//                   server's `retry:` delay (backing off on repeated failure);
//                   "always": also reopen when the server ends the stream (a
//                   feed that never ends, like /api/board/events);
//                   "never" (the POST default): a drop throws a StreamLost
//                   error whose `lastEventId` says where to resume elsewhere.
//   onStatus        called with "open" when the server accepts the stream
//                   and "retrying" when a dropped one is about to be reopened
//                   (for a "live" / "reconnecting" indicator).
// An HTTP error answer (409, 404, 422…) throws an ApiError with the server's
// message; a 401 on /api/* sends the page to /login first.

import {
  ApiError, errorFrom, isServerAway, isSessionGone, RECONNECTED_EVENT, serverAnswered, serverLost, toLogin,
} from "/static/api.js";

const DEFAULT_RETRY_MS = 2000;
const MAX_RETRY_MS = 30000;

/** The connection dropped before the stream ended. */
export class StreamLost extends ApiError {
  constructor(lastEventId) {
    super("the connection to the server was lost");
    this.name = "StreamLost";
    this.lastEventId = lastEventId;
  }
}

/**
 * An incremental parser of the text/event-stream format (WHATWG HTML §9.2.6).
 * push() text as it arrives; each complete event goes to onEvent as
 * { id, event, data, retry } (id is the last id seen, as a string, or null).
 */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.id = null;
    this.retry = null;
  }

  push(text) {
    this.buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end;
      let next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A CR at the very end may be the first half of CRLF: wait for more.
        if (cr === this.buffer.length - 1) break;
        end = cr;
        next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(this.buffer.slice(start, end));
      start = next;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return; // a comment, e.g. ": ping"
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    if (this.data.length) {
      this.onEvent({ id: this.id, event: this.event || "message", data: this.data.join("\n"), retry: this.retry });
    }
    this.data = [];
    this.event = "";
  }
}

/**
 * Where a frame id stands, as [run, seq]: a plain seq is [0, seq], a job
 * stream's `<runId>:<seq>` is [runId, seq]; null for no id or another shape.
 */
export function frameOrder(id) {
  if (typeof id === "number") return [0, id];
  const match = typeof id === "string" ? /^([0-9]+):([0-9]+)$/.exec(id) : null;
  return match ? [Number(match[1]), Number(match[2])] : null;
}

/** The frame an event carries: { id, type, data }. */
function toFrame(event) {
  let id = null;
  if (event.id !== null && /^[0-9]+$/.test(event.id)) id = Number(event.id);
  else if (event.id !== null && /^[0-9]+:[0-9]+$/.test(event.id)) id = event.id;
  try {
    const parsed = JSON.parse(event.data);
    if (parsed && typeof parsed === "object" && typeof parsed.type === "string") {
      return { id, type: parsed.type, data: parsed.data };
    }
  } catch {
    // Not a JSON frame: hand it over as it came.
  }
  return { id, type: event.event, data: event.data };
}

/** Wait `ms` before reconnecting, or less: until the page learns the server is back. */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener(RECONNECTED_EVENT, done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    window.addEventListener(RECONNECTED_EVENT, done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The frames of an SSE stream, as an async iterator (see the top of this file). */
export async function* stream(url, options = {}) {
  const { method = "GET", body, signal, onStatus = () => {} } = options;
  const reconnect = options.reconnect || (method === "GET" ? "onError" : "never");
  let lastEventId = options.lastEventId ?? null;
  let retryMs = DEFAULT_RETRY_MS;
  let failures = 0;
  // Our own controller, so that leaving the loop early also closes the connection.
  const controller = new AbortController();
  const abort = () => controller.abort();
  signal?.addEventListener("abort", abort, { once: true });
  try {
    for (;;) {
      const headers = { Accept: "text/event-stream" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (lastEventId !== null) headers["Last-Event-ID"] = String(lastEventId);
      let ended = false;
      try {
        const response = await fetch(url, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: "same-origin",
          cache: "no-store",
          signal: controller.signal,
        });
        if (isServerAway(response)) serverLost();
        else serverAnswered();
        if (!response.ok) {
          if (isSessionGone(response, url)) toLogin();
          const error = await errorFrom(response);
          // A server that is restarting is worth another try; a refusal is not.
          if (response.status < 500 || reconnect === "never") throw error;
          throw Object.assign(error, { retryable: true });
        }
        failures = 0;
        onStatus("open");
        const frames = [];
        const parser = new SseParser((event) => {
          if (event.retry !== null) retryMs = event.retry;
          frames.push(toFrame(event));
        });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            parser.push(value);
            while (frames.length) {
              const frame = frames.shift();
              if (frame.id !== null) lastEventId = frame.id;
              yield frame;
            }
          }
        } finally {
          reader.cancel().catch(() => {});
        }
        ended = true;
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && !error.retryable) throw error;
        if (reconnect === "never") throw new StreamLost(lastEventId);
      }
      if (ended && reconnect !== "always") return;
      failures += 1;
      onStatus("retrying");
      await sleep(Math.min(retryMs * 2 ** Math.max(0, failures - 1), MAX_RETRY_MS), controller.signal);
      if (controller.signal.aborted) return;
    }
  } finally {
    signal?.removeEventListener("abort", abort);
    controller.abort();
  }
}
