// One renderer for chat and job streams: the same frames, live or replayed,
// make the same transcript.
//
//   import { Transcript } from "/static/render.js";
//   const view = new Transcript(document.getElementById("transcript"), {
//     emptyText: "No messages yet.",      // shown while there are no turns
//     scroller: document.scrollingElement // kept at the bottom if it was there
//   });
//   for await (const frame of stream(url)) view.frame(frame);
//
// Frames (see the SSE frames in openapi.yaml):
//   user_message  starts a turn with the user's message (or a job's prompt);
//   chunk         one log record: `text` deltas stream into the answer;
//                 the answer so far is rendered as Markdown as it grows
//                 (markdown.js); tool calls (with their results, matched
//                 by callId), handoffs and agent starts go into a collapsed
//                 "thinking" section, shown only once there is a tool call
//                 or a handoff in it; a `blocked` record ends the turn as blocked;
//                 `waiting` (for a slot of the model) shows in the status
//                 line until the next record; `retry` (the model server
//                 interrupted the answer) sets the partial answer aside;
//   final_result, done
//                 end the turn: the answer is replaced by the server's
//                 sanitised `html` (in answer() below; the only other
//                 markup inserted is markdown.js's sanitised rendering of
//                 the text streamed so far), code blocks highlighted and
//                 given a Copy button;
//                 a job's `done {runId, outcome}` only adds the outcome;
//                 the result's usage is shown under the answer, token
//                 counts the server did not report (null) as "not reported";
//   error         ends the turn with the message.
// A live chat turn's stream carries no user_message: call
// view.userMessage(text) when sending (a replay that then brings the same
// message, after a dropped stream, continues that turn rather than
// repeating it). Frames whose id is at or below
// view.lastSeq are ignored, so a stream resumed from an earlier point
// repeats nothing; a job stream's ids carry their run (`<runId>:<seq>`), and
// a newer run's frames start over from its first seq (view.lastRun).

import { el, replaceChildren } from "/static/dom.js";
import { frameOrder } from "/static/sse.js";

// markdown.js and the libraries it brings are fetched alongside the page,
// not before it: the page is usable at once, and an answer that streams
// before they arrive shows as plain text until then.
let markdown = null;
const markdownReady = import("/static/markdown.js").then((module) => {
  markdown = module;
  return module;
});

/** `said` as Markdown in `node` (plain text until markdown.js is here). */
function renderSaid(node, said, stillWanted = () => true) {
  if (markdown) {
    markdown.renderMarkdownInto(node, said);
    return;
  }
  node.textContent = said;
  markdownReady.then(() => {
    if (stillWanted()) markdown.renderMarkdownInto(node, said);
  });
}

/** Highlighting and Copy buttons for the code blocks of a rendered answer. */
function decorate(node) {
  if (markdown) markdown.decorateCode(node);
  else markdownReady.then(() => markdown.decorateCode(node));
}

// A streaming answer is re-rendered at most this often.
const RENDER_EVERY_MS = 60;

// Tool arguments and results longer than this are cut, with a note.
const MAX_SHOWN = 20000;
// What a run stopped by a signal shows, by the outcome that follows it.
const STOPPED_BECAUSE = {
  cancelled: "Stopped: the run was cancelled.",
  timed_out: "Stopped: the run went past its time limit.",
  interrupted: "Stopped: the server was shutting down; the job runs again.",
};

function clip(text) {
  const value = String(text ?? "");
  return value.length > MAX_SHOWN
    ? `${value.slice(0, MAX_SHOWN)}\n… (${value.length - MAX_SHOWN} more characters)`
    : value;
}

function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text ?? "");
  }
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** One turn: the user's message and the agent's answer. */
class Turn {
  constructor(text, label) {
    this.text = text;
    this.awaiting = false; // shown before the server confirmed it (see userMessage)
    this.finished = false;
    this.agent = "";
    this.toolCalls = new Map(); // callId → the step's element
    this.said = ""; // the answer's text streamed so far
    this.renderTimer = null;
    this.counts = { tools: 0, handoffs: 0, notes: 0 };
    this.steps = el("ol", { class: "steps" });
    this.summary = el("summary", {}, "Thinking…");
    this.thinking = el("details", { class: "thinking", hidden: true }, this.summary, this.steps);
    this.who = el("p", { class: "who" }, "Agent");
    this.streaming = el("div", { class: "answer streaming" });
    this.status = el("p", { class: "working" }, "Working…");
    this.reply = el("div", { class: "message agent", "aria-busy": "true" },
      this.who, this.thinking, this.streaming, this.status);
    this.node = el("article", { class: "turn" },
      text === null ? null : el("div", { class: "message user" },
        el("p", { class: "who" }, label),
        el("div", { class: "text" }, text)),
      this.reply);
  }

  setAgent(name) {
    if (name && name !== this.agent) {
      this.agent = name;
      this.who.textContent = name;
    }
  }

  addStep(kind, ...children) {
    const item = el("li", { class: `step ${kind}` }, ...children);
    this.steps.append(item);
    // An agent starting, or the model being asked again, alone is not worth
    // a fold: it opens for tool calls, handoffs and what was said before them.
    const { tools, handoffs, notes } = this.counts;
    this.thinking.hidden = !(tools || handoffs || notes);
    this.updateSummary();
    return item;
  }

  /** Show the text streamed so far as Markdown, soon (steps come many a second). */
  scheduleRender() {
    if (this.renderTimer !== null) return;
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      const said = this.said;
      renderSaid(this.streaming, said, () => this.said === said && this.streaming.isConnected);
    }, RENDER_EVERY_MS);
  }

  clearStreaming() {
    clearTimeout(this.renderTimer);
    this.renderTimer = null;
    this.said = "";
    this.streaming.replaceChildren();
  }

  /** Text the agent said before calling a tool is thinking, not the answer. */
  moveTextToThinking() {
    const said = this.said;
    this.clearStreaming();
    if (said.trim()) {
      this.counts.notes += 1;
      this.addStep("note", el("p", { class: "said" }, said));
    }
  }

  updateSummary(latest) {
    const { tools, handoffs } = this.counts;
    const parts = [];
    if (tools) parts.push(plural(tools, "tool call"));
    if (handoffs) parts.push(plural(handoffs, "handoff"));
    const counted = parts.length ? ` · ${parts.join(", ")}` : "";
    const now = !this.finished && latest ? ` — ${latest}` : "";
    this.summary.textContent = `${this.finished ? "Thinking" : "Thinking…"}${counted}${now}`;
  }

  record(record) {
    this.setAgent(record.agentName);
    if (record.type !== "waiting") this.status.textContent = "Working…";
    switch (record.type) {
      case "waiting":
        this.status.textContent = `${record.reason || "waiting for the model"}…`;
        break;
      case "retry":
        this.clearStreaming();
        this.addStep("note", el("p", {}, record.reason || "asked the model again"));
        break;
      case "text":
        this.said += String(record.text ?? "");
        this.scheduleRender();
        break;
      case "agent_start":
        this.addStep("agent", `${record.agentName} started`);
        break;
      case "handoff":
        this.moveTextToThinking();
        this.counts.handoffs += 1;
        this.addStep("handoff", `${record.agentName} handed off to ${record.toAgentName}`);
        this.updateSummary(`handing off to ${record.toAgentName}`);
        this.setAgent(record.toAgentName);
        break;
      case "agent_tool_start": {
        this.moveTextToThinking();
        this.counts.tools += 1;
        const args = prettyJson(record.toolArgumentsStr);
        const item = this.addStep("tool pending",
          el("p", { class: "tool-name" }, el("code", {}, record.toolName), " ",
            el("span", { class: "tool-state" }, "running…")),
          args && args !== "{}" ? el("pre", { class: "args", "aria-label": "Arguments" }, clip(args)) : null);
        if (record.callId) this.toolCalls.set(record.callId, item);
        this.updateSummary(`calling ${record.toolName}`);
        break;
      }
      case "agent_tool_end": {
        let item = this.toolCalls.get(record.callId);
        if (!item) {
          this.counts.tools += 1;
          item = this.addStep("tool", el("p", { class: "tool-name" }, el("code", {}, record.toolName)));
        }
        item.classList.remove("pending");
        item.querySelector(".tool-state")?.remove();
        item.append(el("pre", { class: "result", "aria-label": "Result" }, clip(record.result)));
        this.updateSummary();
        break;
      }
      case "blocked":
        this.finish({ blocked: record.reason });
        break;
      case "final_result":
      case "error":
        // A runner stopped by a signal (someone's Stop, a timeout, a shutdown)
        // is not a failure of the run: the outcome that follows says which.
        if (record.type === "error" && record.cancelled) this.finish({ stopped: true });
        else this.finish(record.type === "error" ? { error: record.message } : { result: record });
        break;
      default:
        // agent_end, result_pending (the result, shown by its final_result)
        // and record kinds this client does not know: nothing to show.
        break;
    }
  }

  /** End the turn with a result record, a block reason, an error or an outcome. */
  finish({ result, blocked, error, outcome, stopped }) {
    if (this.finished) {
      if (outcome) this.reply.dataset.outcome = outcome;
      if (outcome && this.stoppedNote) this.stoppedNote.textContent = STOPPED_BECAUSE[outcome] || STOPPED_BECAUSE.cancelled;
      return;
    }
    this.finished = true;
    clearTimeout(this.renderTimer);
    this.renderTimer = null;
    this.reply.removeAttribute("aria-busy");
    this.status.remove();
    this.updateSummary();
    if (result && result.type === "blocked") {
      blocked = result.reason;
    }
    if (result && blocked === undefined) {
      this.setAgent(result.agentName);
      const shown = answer(result.html, result.text);
      this.streaming.replaceWith(shown);
      if (result.usage) shown.after(usageLine(result.usage));
      this.reply.dataset.outcome = "answered";
    } else if (blocked !== undefined) {
      this.moveTextToThinking();
      this.streaming.replaceWith(el("div", { class: "notice blocked" },
        el("p", { class: "label" }, "Blocked"), answer(result?.html, blocked)));
      this.reply.dataset.outcome = "blocked";
    } else if (stopped) {
      this.stoppedNote = el("p", { class: "notice stopped", role: "status" }, STOPPED_BECAUSE.cancelled);
      this.streaming.after(this.stoppedNote);
      this.reply.dataset.outcome = "cancelled";
    } else if (error !== undefined) {
      if (this.said) renderSaid(this.streaming, this.said);
      this.streaming.after(el("p", { class: "turn-error", role: "alert" }, error || "the turn failed"));
      this.reply.dataset.outcome = "error";
    } else if (outcome) {
      if (this.said) renderSaid(this.streaming, this.said);
      this.streaming.after(el("p", { class: "notice" }, `The run ended: ${outcome}.`));
      this.reply.dataset.outcome = outcome;
    }
  }
}

/**
 * The server's sanitised HTML (web/render.py), with the one inline style it
 * keeps — table cells' text-align — turned into a class: the pages' CSP
 * refuses style attributes. Only real <td>/<th> tags can match, since a "<"
 * in text always comes escaped.
 */
function withoutInlineStyles(html) {
  return html.replace(/<(td|th)\b([^>]*?)\sstyle="([^"]*)"/g, (_, tag, attrs, style) => {
    const align = /text-align:\s*(left|center|right)/.exec(style);
    return `<${tag}${attrs}${align ? ` class="align-${align[1]}"` : ""}`;
  });
}

/** "2 model requests · 1,234 tokens", or "… · tokens not reported" (null counts). */
function usageLine(usage) {
  const parts = [];
  if (Number.isInteger(usage.requests)) parts.push(plural(usage.requests, "model request"));
  const total = usage.totalTokens;
  parts.push(Number.isInteger(total) ? plural(total, "token").replace(/^\d+/, total.toLocaleString()) : "tokens not reported");
  return el("p", { class: "usage" }, parts.join(" · "));
}

/** The final answer: the server's sanitised HTML, or plain text without it. */
function answer(html, text) {
  const node = el("div", { class: "answer rendered" });
  if (typeof html === "string" && html) {
    node.innerHTML = withoutInlineStyles(html); // sanitised on the server
    decorate(node);
  } else {
    node.classList.add("plain");
    node.textContent = String(text ?? "");
  }
  return node;
}

export class Transcript {
  constructor(container, { emptyText = "Nothing here yet.", scroller = null, userLabel = "You" } = {}) {
    this.container = container;
    this.emptyText = emptyText;
    this.scroller = scroller;
    this.userLabel = userLabel;
    this.clear();
  }

  /** Forget everything shown. */
  clear() {
    this.turns = [];
    this.lastSeq = 0;
    this.lastRun = 0;
    replaceChildren(this.container, el("p", { class: "empty" }, this.emptyText));
  }

  /** Whether the latest turn is still going. */
  get live() {
    const turn = this.current;
    return Boolean(turn && !turn.finished);
  }

  get current() {
    return this.turns[this.turns.length - 1] || null;
  }

  /** Start a turn with the user's message (a live chat turn's stream omits it). */
  userMessage(text) {
    return this.keepScrolled(() => {
      const turn = this.startTurn(text);
      turn.awaiting = true;
      return turn;
    });
  }

  /** A turn for a user_message record: the one userMessage() began, if it is this. */
  userTurn(text) {
    const turn = this.current;
    if (turn && turn.awaiting && !turn.finished && turn.text === text) {
      turn.awaiting = false;
      return turn;
    }
    return this.startTurn(text);
  }

  startTurn(text) {
    if (!this.turns.length) this.container.replaceChildren();
    this.clearRefusals();
    const turn = new Turn(text, this.userLabel);
    this.turns.push(turn);
    this.container.append(turn.node);
    return turn;
  }

  /** The open turn, or a new one without a user message (a stream joined midway). */
  openTurn() {
    const turn = this.current;
    return turn && !turn.finished ? turn : this.startTurn(null);
  }

  /** Apply one stream frame ({ id, type, data }); see the top of this file. */
  frame({ id = null, type, data }) {
    const order = frameOrder(id);
    if (order) {
      const [run, seq] = order;
      if (run < this.lastRun || (run === this.lastRun && seq <= this.lastSeq)) return;
      this.lastRun = run;
      this.lastSeq = seq;
    }
    this.keepScrolled(() => {
      switch (type) {
        case "user_message":
          this.userTurn(String(data?.text ?? ""));
          break;
        case "chunk":
          if (data?.type === "user_message") this.userTurn(String(data.text ?? ""));
          else {
            const turn = this.openTurn();
            turn.awaiting = false;
            turn.record(data || {});
          }
          break;
        case "final_result":
          this.openTurn().finish({ result: data || {} });
          break;
        case "done":
          if (data && "outcome" in data && !("type" in data)) {
            // A job stream's end: {runId, outcome}.
            if (this.current) this.current.finish({ outcome: data.outcome });
          } else {
            this.openTurn().finish({ result: data || {} });
          }
          break;
        case "error":
          if (data?.cancelled) this.openTurn().finish({ stopped: true });
          else this.openTurn().finish({ error: String(data?.message ?? "") });
          break;
        default:
          break;
      }
    });
  }

  /** Take back a turn that never started (the server refused the message). */
  dropTurn(turn) {
    const index = this.turns.indexOf(turn);
    if (index < 0) return;
    this.turns.splice(index, 1);
    turn.node.remove();
    if (!this.turns.length) this.clear();
  }

  /**
   * A turn the server refused: in its place, where the answer would have
   * been, `message` (what went wrong and what to do), until the next turn.
   */
  refuse(turn, message) {
    const index = this.turns.indexOf(turn);
    if (index >= 0) this.turns.splice(index, 1);
    this.clearRefusals();
    const notice = el("p", { class: "turn-error refused" }, message);
    this.keepScrolled(() => turn.node.replaceWith(notice));
    return notice;
  }

  clearRefusals() {
    for (const node of this.container.querySelectorAll(".refused")) node.remove();
  }

  /** Show an error that ended the stream itself (lost connection, refusal). */
  fail(message) {
    this.keepScrolled(() => this.openTurn().finish({ error: message }));
  }

  keepScrolled(change) {
    const s = this.scroller;
    const atBottom = s && s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    const result = change();
    if (atBottom) s.scrollTop = s.scrollHeight;
    return result;
  }
}
