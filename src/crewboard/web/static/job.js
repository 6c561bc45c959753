// One job (/jobs/<id>): its status and actions, the artifact (the server's
// sanitised HTML in a sandboxed iframe, and a download link), the latest
// run's log — live while it runs, through the shared transcript renderer —,
// the results of its parents, comments, details, its crew as a graph, its
// runs and its timeline. The change feed keeps it all current.

import { api, ApiError, onReconnect } from "/static/api.js";
import { el, replaceChildren, showError, timeEl } from "/static/dom.js";
import {
  OUTCOME_LABELS, STATUS_LABELS, actorLabel, formatDuration, outcomeBadge, plural, statusBadge,
} from "/static/format.js";
import { whileBusy } from "/static/dialog.js";
import { FormErrors } from "/static/formerror.js";
import { jobActionButtons } from "/static/jobactions.js";
import { Transcript } from "/static/render.js";
import { stream } from "/static/sse.js";
import { startShell } from "/static/shell.js";

const me = await startShell({ page: "board" });

const $ = (id) => document.getElementById(id);
const jobId = Number(location.pathname.split("/").filter(Boolean)[1]);
const errorBox = $("job-error");
const noticeBox = $("job-notice");
const logState = $("log-state");

const transcript = new Transcript($("transcript"), {
  emptyText: "The log appears here once the job starts.",
  userLabel: "Prompt",
});

let detail = null; // the last /api/jobs/:id answer
let logStream = null; // { controller, runId (once known), ended }
let shownArtifactRun = null;

// --- small views -------------------------------------------------------------------

/** "user:3" → the owner's email, "you", or "user 3"; others as format.js says. */
function actorName(actor) {
  const match = /^user:(\d+)$/.exec(actor || "");
  if (!match) return actorLabel(actor);
  const id = Number(match[1]);
  if (id === me.id) return "you";
  if (detail && id === detail.job.owner.id) return detail.job.owner.email;
  return `user ${id}`;
}

function fact(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

function showFacts(job) {
  const facts = [
    fact("Status", statusBadge(job.status), job.cancelRequested ? " stopping…" : null),
    fact("Job", `#${job.id} (${job.key})`),
    fact("Crew", `#${job.crewId}`),
    fact("Template", job.templateId),
    fact("Agent", job.agent),
    fact("Owner", job.owner.id === me.id ? `${job.owner.email} (you)` : job.owner.email),
    job.scheduleId !== null ? fact("Schedule", el("a", { href: `/schedules?schedule=${job.scheduleId}` }, `#${job.scheduleId}`)) : null,
    job.scheduledAt ? fact("Scheduled for", timeEl(job.scheduledAt)) : null,
    fact("Created", timeEl(job.createdAt)),
    fact("Updated", timeEl(job.updatedAt)),
    fact("Failed attempts", `${job.attempts} of ${job.maxRetries + 1} allowed`),
    fact("Time limit", formatDuration(job.timeoutS)),
    job.artifactName ? fact("Saves", el("code", {}, job.artifactName)) : null,
    job.blockedReason ? fact("Blocked because", el("span", { class: "reason" }, job.blockedReason)) : null,
    job.feedback ? fact("Feedback", el("span", { class: "feedback" }, job.feedback)) : null,
  ];
  replaceChildren($("facts"), facts);
}

function showRuns(runs) {
  const items = [...runs].reverse().map((run) => el("li", { class: "run" },
    el("p", { class: "run-head" },
      el("strong", {}, `Attempt ${run.attempt}`), " ", outcomeBadge(run.outcome)),
    el("p", { class: "run-meta" },
      "Started ", timeEl(run.startedAt),
      run.durationS !== null ? ` · ${formatDuration(run.durationS)}` : null,
      run.exitCode !== null ? ` · exit ${run.exitCode}` : null),
    // A run someone stopped did not fail: say so plainly, not in red.
    run.outcome === "cancelled" ? el("p", { class: "run-meta" }, "Stopped at your request.")
      : run.error ? el("p", { class: "run-error" }, run.error) : null,
    run.artifact && run.outcome === "succeeded" ? el("p", { class: "run-meta" }, "Saved ", el("code", {}, run.artifact)) : null));
  replaceChildren($("runs"), items);
  $("runs-empty").hidden = runs.length > 0;
}

const KIND_LABELS = {
  created: "Created", ready: "Ready", dispatched: "Dispatched", run_started: "Run started",
  run_ended: "Run ended", done: "Done", retry: "Retry", requeued: "Requeued", blocked: "Blocked",
  artifact_not_stored: "File not stored",
  recovered: "Recovered", comment: "Comment", unblock: "Unblocked", redo: "Redo", status: "Status",
  cancel: "Cancelled", cancel_requested: "Cancel asked", archive: "Archived", unarchive: "Restored",
  webhook_queued: "Webhook queued", webhook_delivered: "Webhook delivered",
  webhook_failed: "Webhook failed", webhook_gave_up: "Webhook given up",
};

function showTimeline(events) {
  replaceChildren($("timeline"), events.map((event) => el("li", { class: `event kind-${event.kind}` },
    el("p", { class: "event-head" },
      el("span", { class: "event-kind" }, KIND_LABELS[event.kind] || event.kind),
      " ", el("span", { class: "event-meta" }, actorName(event.actor), " · ", timeEl(event.createdAt))),
    event.message && event.message !== (KIND_LABELS[event.kind] || "").toLowerCase()
      ? el("p", { class: event.kind === "redo" || event.kind === "comment" ? "event-text quoted" : "event-text" }, event.message)
      : null)));
}

function showComments(comments) {
  replaceChildren($("comments"), comments.map((comment) => el("li", { class: "comment" },
    el("p", { class: "comment-meta" },
      el("strong", {}, comment.author.id === me.id ? "You" : comment.author.email), " · ", timeEl(comment.createdAt)),
    el("p", { class: "comment-text" }, comment.text))));
  $("comments-empty").hidden = comments.length > 0;
}

function showParents(parents) {
  $("parents-section").hidden = parents.length === 0;
  replaceChildren($("parents"), parents.map((parent) => {
    const text = parent.result ?? "";
    return el("details", { class: "parent", open: text.length < 800 },
      el("summary", {},
        el("a", { href: `/jobs/${parent.jobId}` }, parent.title || parent.key), " ", statusBadge(parent.status)),
      parent.result === null
        ? el("p", { class: "empty" }, "No result yet.")
        : el("div", { class: "parent-result" }, text));
  }));
}

/** The artifact: Markdown as the server's rendering in a sandboxed frame; anything else as links. */
function showArtifact(job, runs) {
  // A running run names the file it is meant to save; only a finished one has it.
  const saved = [...runs].reverse().find((run) => run.artifact && run.outcome === "succeeded");
  const section = $("artifact-section");
  if (!saved) {
    section.hidden = true;
    shownArtifactRun = null;
    return;
  }
  const name = saved.artifact;
  section.hidden = false;
  $("artifact-name").textContent = name;
  const base = `/api/jobs/${job.id}/artifact`;
  $("artifact-download").href = `${base}?download=1`;
  $("artifact-download").setAttribute("download", name);
  const markdown = /\.(md|markdown)$/i.test(name);
  $("artifact-open").href = markdown ? `${base}?format=html` : base;
  if (shownArtifactRun === saved.id) return;
  shownArtifactRun = saved.id;
  const view = $("artifact-view");
  if (markdown) {
    // Served with its own strict CSP; the empty sandbox keeps it from scripts,
    // forms, popups and this page's origin all the same.
    replaceChildren(view, el("iframe", {
      src: `${base}?format=html`, sandbox: "", title: `The artifact ${name}`, loading: "lazy",
      referrerpolicy: "same-origin",
    }));
  } else {
    replaceChildren(view, el("p", { class: "hint" }, `${name} is not Markdown: open or download it to see it.`));
  }
}

function showActions(job) {
  const box = $("job-actions");
  const focused = box.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  replaceChildren(box, jobActionButtons(job, {
    small: false,
    onDone: (action, updated) => {
      showError(errorBox, "");
      if (!updated) {
        showGone("The job was deleted.");
        return;
      }
      noticeBox.hidden = true;
      refresh();
      if (action === "redo" || action === "unblock") restartLog();
    },
    onError: (message) => showError(errorBox, message),
    refocus: (action) => {
      const buttons = $("job-actions");
      (buttons.querySelector(`[data-action="${action}"]`) || buttons.querySelector("button") || $("job-title")).focus();
    },
  }));
  if (focused) (box.querySelector(`[data-action="${focused}"]`) || box.querySelector("button") || $("job-title")).focus();
}

function show(next) {
  detail = next;
  const { job } = next;
  document.title = `${job.title || `Job ${job.id}`} · crewboard`;
  $("crumb-job").textContent = `Job #${job.id}`;
  $("job-title").textContent = job.title || `Job ${job.id}`;
  replaceChildren($("job-status"), statusBadge(job.status));
  showActions(job);
  showFacts(job);
  showRuns(next.runs);
  showTimeline(next.events);
  showComments(next.comments);
  showParents(next.parentResults);
  showArtifact(job, next.runs);
  $("loading").hidden = true;
  $("job").hidden = false;
  if (logStream && !logStream.ended && job.status === "running" && transcript.live) {
    logState.textContent = "Live: the run is in progress.";
  }
  // A new run that the log is not showing: follow it.
  const latest = next.runs[next.runs.length - 1];
  if (latest && logStream?.ended && logStream.runId !== latest.id) restartLog();
}

function showGone(message) {
  stopLog();
  feed?.abort();
  $("loading").hidden = true;
  $("job").hidden = true;
  $("not-found").hidden = false;
  $("not-found-text").textContent = message;
  document.title = "Job not found · crewboard";
  $("crumb-job").textContent = "Not found";
}

// --- loading and staying current --------------------------------------------------

let refreshing = null;
let again = false;
let loadFailed = false; // the error box shows a failed load (cleared by the next good one)

/** Load the job again (coalescing bursts of changes into one request at a time). */
async function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      again = false;
      try {
        show(await api(`/api/jobs/${jobId}`));
        if (loadFailed) showError(errorBox, "");
        loadFailed = false;
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          showGone(detail ? "The job was deleted." : `There is no job #${jobId}, or it is not yours to see.`);
          return;
        }
        $("loading").hidden = true;
        loadFailed = true;
        showError(errorBox, `Cannot load the job: ${error.message}`);
      }
    } while (again);
  })();
  try {
    await refreshing;
  } finally {
    refreshing = null;
  }
}

let graphTimer = null;

async function loadGraph() {
  try {
    drawGraph(await api(`/api/jobs/${jobId}/graph`));
  } catch (error) {
    $("graph-note").textContent = `Cannot draw the crew: ${error.message}`;
  }
}

function refreshGraphSoon() {
  clearTimeout(graphTimer);
  graphTimer = setTimeout(loadGraph, 300);
}

// --- the crew graph ---------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 150;
const NODE_H = 46;
const GAP_X = 34;
const GAP_Y = 12;
const PAD = 6;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function shorten(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Lay the crew out by dependency depth (parents left of children) and draw it. */
function drawGraph(graph) {
  const depth = new Map();
  const parents = new Map(graph.nodes.map((n) => [n.id, []]));
  for (const edge of graph.edges) parents.get(edge.to)?.push(edge.from);
  // Nodes come parents first, so one pass sets every depth.
  for (const node of graph.nodes) {
    depth.set(node.id, Math.max(-1, ...parents.get(node.id).map((p) => depth.get(p) ?? 0)) + 1);
  }
  const columns = [];
  for (const node of graph.nodes) {
    const d = depth.get(node.id);
    (columns[d] ||= []).push(node);
  }
  const rows = Math.max(...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * NODE_W + (columns.length - 1) * GAP_X;
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y;
  const place = new Map();
  columns.forEach((column, d) => {
    const offset = ((rows - column.length) * (NODE_H + GAP_Y)) / 2;
    column.forEach((node, i) => place.set(node.id, {
      x: PAD + d * (NODE_W + GAP_X),
      y: PAD + offset + i * (NODE_H + GAP_Y),
    }));
  });

  const edges = graph.edges.map((edge) => {
    const a = place.get(edge.from);
    const b = place.get(edge.to);
    if (!a || !b) return null;
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x - 4;
    const y2 = b.y + NODE_H / 2;
    const bend = GAP_X / 2;
    return svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" });
  });
  const nodes = graph.nodes.map((node) => {
    const { x, y } = place.get(node.id);
    const title = node.title || node.key;
    const current = node.id === jobId;
    return svg("a", {
      href: `/jobs/${node.id}`, class: `gnode s-${node.status}${current ? " current" : ""}`,
      "aria-label": `${title}: ${STATUS_LABELS[node.status] || node.status}${current ? " (this job)" : ""}`,
      "aria-current": current ? "page" : null,
    },
    svg("title", {}, `${title} — ${STATUS_LABELS[node.status] || node.status}, agent ${node.agent}`),
    svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6 }),
    svg("text", { x: x + 10, y: y + 19, class: "gtitle" }, shorten(title, 40)),
    svg("text", { x: x + 10, y: y + 36, class: "gstatus" }, `${STATUS_LABELS[node.status] || node.status} · ${shorten(node.key, 40)}`));
  });
  const drawing = svg("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "group",
    "aria-label": `Crew #${graph.crewId}: ${plural(graph.nodes.length, "job")}`,
  },
  svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto" },
    svg("path", { d: "M0,0 L8,4 L0,8 z", class: "arrowhead" }))),
  edges, nodes);
  replaceChildren($("graph"), drawing);
  // Cut titles to what their box holds, now that they can be measured.
  for (const text of drawing.querySelectorAll(".gtitle, .gstatus")) {
    const full = text.textContent;
    let keep = full.length;
    while (keep > 4 && text.getComputedTextLength() > NODE_W - 18) {
      keep -= 1;
      text.textContent = `${full.slice(0, keep)}…`;
    }
  }
  $("graph-note").textContent = graph.nodes.length > 1
    ? `${plural(graph.nodes.length, "job")}; arrows point from a job to those that need its result.`
    : "This job is a crew of one.";
}

// --- the live log -----------------------------------------------------------------

function stopLog() {
  logStream?.controller.abort();
  logStream = null;
}

function restartLog() {
  stopLog();
  transcript.clear();
  followLog();
}

async function followLog() {
  const current = { controller: new AbortController(), runId: null, ended: false, failed: false };
  logStream = current;
  // Until the job's first run starts, the transcript's empty text says so.
  logState.textContent = "";
  try {
    for await (const frame of stream(`/api/jobs/${jobId}/stream`, { signal: current.controller.signal })) {
      if (logStream !== current) return;
      if (frame.type === "user_message" || frame.type === "chunk") {
        logState.textContent = detail?.job.status === "running" ? "Live: the run is in progress." : "";
      }
      transcript.frame(frame);
      // A `done` ends a run; the stream ends after the latest run's, and
      // brings the next run (a retry) first if the one followed was older.
      if (frame.type === "done") {
        current.runId = frame.data?.runId ?? null;
        const outcome = frame.data?.outcome;
        logState.textContent = outcome ? `This run ended: ${OUTCOME_LABELS[outcome] || outcome}.` : "";
      }
    }
  } catch (error) {
    if (current.controller.signal.aborted) return;
    if (error instanceof ApiError && error.status === 404) return; // the job went; refresh() says so
    current.failed = true;
    logState.textContent = `The log stopped: ${error.message}`;
  }
  if (logStream === current) {
    current.ended = true;
    refresh(); // the run's outcome, artifact and events
  }
}

// --- after the server was away ------------------------------------------------------

// Everything shown may have changed meanwhile: load it again and drop the
// errors that said the server could not be reached.
onReconnect(() => {
  if (!$("not-found").hidden) return;
  showError(errorBox, "");
  commentErrors.clear(); // what was typed stays, to be sent again
  loadFailed = false;
  refresh();
  loadGraph();
  if (!logStream || logStream.failed) restartLog();
  if (!feed) followFeed();
});

// --- the change feed ----------------------------------------------------------------

let feed = null;

async function followFeed() {
  feed = new AbortController();
  const isParent = (id) => Boolean(detail?.parentResults.some((p) => p.jobId === id));
  try {
    for await (const frame of stream("/api/board/events", { reconnect: "always", signal: feed.signal })) {
      const change = frame.data;
      if (frame.type !== "event" || !change) continue;
      if (change.kind === "deleted") {
        if ((change.data?.jobIds || []).includes(jobId)) showGone("The job was deleted.");
        else refreshGraphSoon();
        continue;
      }
      if (change.jobId === jobId || isParent(change.jobId)) {
        refresh();
        refreshGraphSoon();
      } else if (change.job && detail && change.job.crewId === detail.job.crewId) {
        refreshGraphSoon();
      }
    }
  } catch {
    // The page stays usable without live updates; onReconnect resumes them.
    feed = null;
  }
}

// --- comments -------------------------------------------------------------------------

const commentForm = $("comment-form");
commentForm.addEventListener("submit", (event) => {
  event.preventDefault();
  whileBusy(commentForm.querySelector("button"), addComment);
});

const commentErrors = new FormErrors(commentForm, {
  box: $("comment-error"), fields: { text: $("comment-text") }, labels: { text: "comment" },
});

async function addComment() {
  const box = $("comment-text");
  const text = box.value;
  commentErrors.clear();
  if (!text.trim()) {
    commentErrors.show("write something first", { field: box });
    return;
  }
  try {
    await api(`/api/jobs/${jobId}/comments`, { method: "POST", body: { text } });
    box.value = "";
    await refresh();
  } catch (error) {
    commentErrors.show(error, { prefix: "The comment was not added" });
  }
}

// --- start ------------------------------------------------------------------------------

if (!Number.isSafeInteger(jobId)) {
  showGone("That is not a job's address.");
} else {
  await refresh();
  if (detail) {
    followFeed();
    followLog();
    loadGraph();
  }
}
