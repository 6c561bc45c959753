// The chat page: pick an agent and a model, start or continue a session, and
// watch the reply stream in. Saved sessions are listed at the side; opening
// one replays it through the same renderer. The open session is in the URL
// (?session=NAME), so a reload during a turn replays the session and follows
// the turn until it ends. Once replayed, an open session is followed
// (`replay?follow=true`): a turn started in another tab shows here as it
// streams. A refused message is answered where it was written: under the
// composer and in the transcript where its turn would have been.
import { api, ApiError, onReconnect } from "/static/api.js";
import { el, replaceChildren, showError, timeEl } from "/static/dom.js";
import { describeError, FormErrors } from "/static/formerror.js";
import { Transcript } from "/static/render.js";
import { stream, StreamLost } from "/static/sse.js";
import { startShell } from "/static/shell.js";

const $ = (id) => document.getElementById(id);
const agentSelect = $("agent");
const modelSelect = $("model");
const nameInput = $("session-name");
const form = $("composer");
const message = $("message");
const sendButton = $("send");
const stopButton = $("stop");
const deleteButton = $("delete-session");
const errorBox = $("chat-error");
const sessionList = $("session-list");
const sessionsPanel = $("sessions");
const sessionsToggle = $("sessions-toggle");
const composerErrors = new FormErrors(form, {
  box: $("composer-error"),
  fields: { message, sessionName: nameInput, agent: agentSelect, modelSpec: modelSelect },
  labels: { message: "message", sessionName: "session name", modelSpec: "model", agent: "agent" },
});

// How often a replay that ends mid-turn is asked again before giving up.
const REPLAY_ATTEMPTS = 5;
const NEW_CHAT_EMPTY = "Pick an agent and a model, then send a message to start a session.";
const transcript = new Transcript($("transcript"), {
  emptyText: NEW_CHAT_EMPTY,
  scroller: document.scrollingElement,
});

let agents = [];
let models = [];
let saved = []; // [{sessionName, id, updatedAt}]
let current = null; // the open session, as /api/session/get returns it
let streaming = null; // the AbortController of the stream being read
let watching = null; // the AbortController of the open session's follow stream
let usable = false; // agents and models are loaded: messages can be sent

// --- the pickers -----------------------------------------------------------

function fillAgents() {
  replaceChildren(agentSelect, agents.map((a) => el("option", { value: a.id }, a.name || a.id)));
}

function fillModels() {
  const groups = new Map();
  for (const model of models) {
    if (!groups.has(model.provider)) groups.set(model.provider, []);
    groups.get(model.provider).push(el("option", { value: model.id }, model.name));
  }
  replaceChildren(modelSelect,
    [...groups].map(([provider, options]) => el("optgroup", { label: provider }, options)));
}

/** Select `spec` in the model list, adding it if the server no longer lists it. */
function chooseModel(spec) {
  if (!spec) return;
  if (![...modelSelect.options].some((o) => o.value === spec)) {
    modelSelect.append(el("option", { value: spec }, `${spec} (not listed now)`));
  }
  modelSelect.value = spec;
  describeModel();
}

/** The chosen model in full, under the picker (a narrow picker cuts long names). */
function describeModel() {
  const option = modelSelect.selectedOptions[0];
  $("model-full").textContent = option ? option.value : "";
  modelSelect.title = option ? option.value : "";
}

modelSelect.addEventListener("change", describeModel);

function describeAgent() {
  const agent = agents.find((a) => a.id === agentSelect.value);
  $("agent-description").textContent = agent?.description || "";
  describeMcpTools(agent);
}

/** The tools the agent's MCP servers give it (names and descriptions), or
 * why there are none yet: the server lists them once each has started. */
function describeMcpTools(agent) {
  const box = $("agent-tools");
  const servers = agent?.mcp || [];
  box.hidden = servers.length === 0;
  if (box.hidden) return;
  const tools = agent.mcpTools || [];
  $("agent-tools-summary").textContent = tools.length
    ? `MCP tools (${tools.length}) from ${servers.join(", ")}`
    : `MCP tools from ${servers.join(", ")}: not listed yet`;
  replaceChildren($("agent-tools-list"), tools.map((t) =>
    el("li", {}, el("code", {}, t.name), t.description ? ` — ${t.description}` : "")));
}

agentSelect.addEventListener("change", () => {
  describeAgent();
  // A preset that names a model suggests it.
  const agent = agents.find((a) => a.id === agentSelect.value);
  if (agent?.model && models.some((m) => m.id === agent.model)) chooseModel(agent.model);
});

// --- the sidebar -----------------------------------------------------------

async function loadSaved() {
  try {
    saved = await api("/api/session/names");
  } catch (error) {
    $("sessions-empty").textContent = "Cannot list your sessions.";
    showError(errorBox, `Cannot list your sessions: ${error.message}`);
    return;
  }
  $("sessions-empty").textContent = "No saved sessions yet.";
  replaceChildren(sessionList, saved.map((s) =>
    el("li", { class: s.sessionName === current?.sessionName ? "current" : null },
      el("a", {
        href: `/chat?session=${encodeURIComponent(s.sessionName)}`,
        "aria-current": s.sessionName === current?.sessionName ? "page" : null,
        onclick: (event) => {
          event.preventDefault();
          openSession(s.sessionName, { push: true });
        },
      }, s.sessionName, el("small", {}, timeEl(s.updatedAt))))));
  $("sessions-empty").hidden = saved.length > 0;
  sessionsToggle.textContent = saved.length ? `Saved sessions (${saved.length})` : "Saved sessions";
}

sessionsToggle.addEventListener("click", () => {
  const open = sessionsPanel.classList.toggle("collapsed") === false;
  sessionsToggle.setAttribute("aria-expanded", String(open));
});

function collapseSidebar() {
  sessionsPanel.classList.add("collapsed");
  sessionsToggle.setAttribute("aria-expanded", "false");
}

// The controls above work from the first tap; the rest waits for the sign-in.
await startShell({ page: "chat" });

// --- state of the page -----------------------------------------------------

/** Busy while the open session's latest turn is still being written. */
function showLive() {
  setBusy(transcript.live || streaming !== null);
}

function setBusy(busy) {
  sendButton.disabled = busy || !usable;
  stopButton.hidden = !busy || !current;
  agentSelect.disabled = busy;
  modelSelect.disabled = busy;
  deleteButton.disabled = busy;
}

function showSession(session) {
  current = session;
  $("session-title").textContent = session ? session.sessionName : "New chat";
  document.title = `${session ? session.sessionName : "Chat"} · crewboard`;
  deleteButton.hidden = !session;
  $("session-name-field").hidden = Boolean(session);
  if (session) {
    agentSelect.value = session.agent;
    chooseModel(session.modelSpec);
    describeAgent();
  }
  for (const item of sessionList.querySelectorAll("li")) {
    const link = item.querySelector("a");
    const here = Boolean(session) && new URL(link.href).searchParams.get("session") === session.sessionName;
    item.classList.toggle("current", here);
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function setUrl(name, { push = false } = {}) {
  const url = name ? `/chat?session=${encodeURIComponent(name)}` : "/chat";
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function stopReading() {
  streaming?.abort();
  streaming = null;
  watching?.abort();
  watching = null;
}

function newChat({ push = false, focus = true } = {}) {
  stopReading();
  showSession(null);
  showError(errorBox, "");
  composerErrors.clear();
  transcript.emptyText = NEW_CHAT_EMPTY;
  transcript.clear();
  setBusy(false);
  setUrl(null, { push });
  if (focus) message.focus();
}

$("new-chat").addEventListener("click", () => {
  collapseSidebar();
  newChat({ push: true });
});

// --- reading streams -------------------------------------------------------

/** Read frames into the transcript; resolves when the stream ends. */
async function follow(frames) {
  for await (const frame of frames) {
    transcript.frame(frame);
    if (frame.type === "done" && frame.data?.session) showSession(frame.data.session);
  }
}

/**
 * Follow the open session from what is shown on: turns started elsewhere
 * (another tab, a script) stream in as they are written. Reconnects by
 * itself, resuming after the last record shown.
 */
function watch(session) {
  if (watching) return;
  const controller = (watching = new AbortController());
  const url = `/api/session/replay/${encodeURIComponent(session.sessionName)}?follow=true`;
  (async () => {
    try {
      const frames = stream(url, {
        signal: controller.signal,
        reconnect: "always",
        lastEventId: transcript.lastSeq || null,
      });
      for await (const frame of frames) {
        transcript.frame(frame);
        if (!streaming) showLive();
      }
    } catch (error) {
      if (!controller.signal.aborted) showError(errorBox, `Cannot follow the session: ${describeError(error)}`);
    } finally {
      if (watching === controller) watching = null;
    }
  })();
}

/** Replay a session (from after `lastEventId`), following a running turn. */
async function replay(session, lastEventId = null) {
  stopReading();
  const controller = (streaming = new AbortController());
  setBusy(session.live);
  const url = `/api/session/replay/${encodeURIComponent(session.sessionName)}`;
  try {
    for (let attempt = 1; ; attempt += 1) {
      await follow(stream(url, { signal: controller.signal, lastEventId }));
      if (!transcript.live || controller.signal.aborted) break;
      // The stream ended in the middle of a turn (the server restarted, say):
      // ask again from the last record shown.
      if (attempt === REPLAY_ATTEMPTS) {
        transcript.fail("The stream ended before the turn did; reload the page to see the rest.");
        break;
      }
      lastEventId = transcript.lastSeq || null;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  } catch (error) {
    if (!controller.signal.aborted) showError(errorBox, `Cannot replay the session: ${error.message}`);
  } finally {
    if (streaming === controller) {
      streaming = null;
      setBusy(false);
      watch(session);
    }
  }
}

async function openSession(name, { push = false } = {}) {
  collapseSidebar();
  stopReading();
  showError(errorBox, "");
  const entry = saved.find((s) => s.sessionName === name);
  if (!entry) {
    newChat();
    showError(errorBox, `You have no saved session named "${name}".`);
    return;
  }
  transcript.emptyText = "Loading…";
  transcript.clear();
  let session;
  try {
    session = await api(`/api/session/get/${entry.id}`);
  } catch (error) {
    showError(errorBox, `Cannot open "${name}": ${error.message}`);
    setBusy(false);
    return;
  }
  showSession(session);
  setUrl(name, { push });
  transcript.emptyText = "No messages in this session yet.";
  transcript.clear();
  await replay(session);
}

window.addEventListener("popstate", () => {
  const name = new URLSearchParams(location.search).get("session");
  if (name) openSession(name);
  else newChat();
});

// --- sending ---------------------------------------------------------------

/** The session to send to: a new one, or the open one with the chosen agent and model. */
async function sessionForMessage() {
  const agent = agentSelect.value;
  const modelSpec = modelSelect.value || undefined;
  if (current && current.agent === agent && current.modelSpec === modelSpec) return current;
  const body = { agent, modelSpec };
  const name = current ? current.sessionName : nameInput.value.trim();
  if (name) body.sessionName = name;
  const session = await api("/api/session/create", { method: "POST", body });
  nameInput.value = "";
  showSession(session);
  setUrl(session.sessionName);
  return session;
}

/** Say why a message was not sent: under the composer, and where its turn would have been. */
function refused(turn, text, error) {
  const tooLarge = error.status === 413 && error.details?.maxBytes
    ? new Error(`message too long: ${text.length.toLocaleString("en-US")} characters; the server takes `
      + `at most ${error.details.maxBytes.toLocaleString("en-US")} bytes at once`)
    : null;
  const shown = composerErrors.show(tooLarge || error, { prefix: "Not sent", field: tooLarge ? message : null });
  if (turn) transcript.refuse(turn, shown);
  if (!message.value) message.value = text;
}

async function send(text) {
  showError(errorBox, "");
  composerErrors.clear();
  setBusy(true);
  let session;
  try {
    session = await sessionForMessage();
  } catch (error) {
    setBusy(false);
    composerErrors.show(error, { prefix: "Cannot start the session" });
    return;
  }
  setBusy(true);
  message.value = "";
  const seqBefore = transcript.lastSeq;
  const turn = transcript.userMessage(text);
  const controller = (streaming = new AbortController());
  try {
    for await (const frame of stream(`/api/session/newUserMessage/${session.id}`, {
      method: "POST",
      body: { message: text },
      signal: controller.signal,
    })) {
      // The follow stream brings the same records; an id-less frame here is
      // this connection's own trouble, which the follow stream makes up for.
      if (frame.id === null && frame.type === "error" && watching) continue;
      transcript.frame(frame);
      if (frame.type === "done" && frame.data?.session) showSession(frame.data.session);
    }
    if (transcript.live && !controller.signal.aborted && !watching) {
      // The stream ended without the turn's end: follow the rest in the log.
      streaming = null;
      await replay({ ...session, live: true }, transcript.lastSeq || null);
    }
  } catch (error) {
    if (controller.signal.aborted) return;
    if (error instanceof StreamLost) {
      // The turn goes on without us: the follow stream (or a replay) picks it up.
      streaming = null;
      if (!watching) await replay({ ...session, live: true }, transcript.lastSeq || null);
      return;
    }
    if (error instanceof ApiError && transcript.lastSeq === seqBefore && !turn.finished) {
      // Refused before it began (409: a reply is being written elsewhere, say).
      refused(turn, text, error);
    } else {
      composerErrors.show(error, { prefix: "The turn failed" });
    }
  } finally {
    if (streaming === controller) {
      streaming = null;
      showLive();
    }
    if (current && !streaming) watch(current);
    loadSaved();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = message.value;
  if (!text.trim()) {
    composerErrors.show("write a message first", { field: message });
    return;
  }
  if (!sendButton.disabled) send(text);
});

message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", async () => {
  if (!current) return;
  stopButton.disabled = true;
  try {
    // Closing the session stops its running turn; the stream then ends with the reason.
    await api(`/api/session/delete/${current.id}`, { method: "POST" });
  } catch (error) {
    composerErrors.show(error, { prefix: "Cannot stop the turn" });
  } finally {
    stopButton.disabled = false;
  }
});

deleteButton.addEventListener("click", async () => {
  if (!current) return;
  const name = current.sessionName;
  if (!confirm(`Delete the session "${name}" and its history? This cannot be undone.`)) return;
  try {
    await api(`/api/session/byName/${encodeURIComponent(name)}`, { method: "DELETE" });
  } catch (error) {
    showError(errorBox, `Cannot delete "${name}": ${error.message}`);
    return;
  }
  newChat();
  await loadSaved();
});

// After the server was away: the sessions again, and none of the errors that
// said it could not be reached (the follow stream reconnects by itself).
onReconnect(() => {
  showError(errorBox, "");
  loadSaved();
  if (current && !streaming && !watching) watch(current);
});

// --- start -----------------------------------------------------------------

let loaded = false;
try {
  [agents, models] = await Promise.all([api("/api/agents"), api("/api/models"), loadSaved()]);
  loaded = true;
} catch (error) {
  showError(errorBox, `Cannot load the agents and models: ${error.message}`);
}
fillAgents();
fillModels();
const preferred = agents.find((a) => a.id === "assistant") || agents[0];
if (preferred) agentSelect.value = preferred.id;
const presetModel = preferred?.model && models.some((m) => m.id === preferred.model) ? preferred.model : null;
chooseModel(presetModel || (models.some((m) => m.id === "offline:scripted") ? "offline:scripted" : models[0]?.id));
describeAgent();
usable = agents.length > 0 && models.length > 0;

const opening = new URLSearchParams(location.search).get("session");
if (opening) await openSession(opening);
// Someone already typing (a session name, say) keeps their place: the next
// keys must not land in the message box.
else newChat({ focus: !document.activeElement || document.activeElement === document.body });
if (loaded && !agents.length) showError(errorBox, "No agent presets are available: a chat needs one.");
else if (loaded && !models.length) showError(errorBox, "No models are available: a chat needs one.");
