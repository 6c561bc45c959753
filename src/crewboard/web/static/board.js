// The board: one column per status, each a page of jobs (newest first) with
// "Load more", kept live by the change feed (/api/board/events). Cards carry
// the actions that fit the job. The filters and the search live in the URL
// (?status=&mine=1&archived=1&q=), so the back button and reloads keep them.
//
// No request ever asks for every job: each column loads PAGE jobs at a time
// with the list's cursor, and the feed only moves cards that are in view (or
// newer than the last one loaded). The column headings show real totals from
// /api/jobs/counts, fetched again after each burst of changes. Until a column
// has its first page it shows placeholder cards and "Loading…", never "No jobs".

import { api, onReconnect } from "/static/api.js";
import { confirmDialog, whileBusy } from "/static/dialog.js";
import { el, replaceChildren, showError, timeEl } from "/static/dom.js";
import { STATUS_HINTS, STATUS_LABELS, STATUSES, plural } from "/static/format.js";
import { jobActionButtons } from "/static/jobactions.js";
import { stream } from "/static/sse.js";
import { startShell } from "/static/shell.js";

const me = await startShell({ page: "board" });

const PAGE = 20;
const BOARD_COLUMNS = ["waiting", "ready", "running", "blocked", "done"];
// How long to wait for the feed to open before loading the columns anyway.
const FEED_WAIT_MS = 2000;
// Typing in the search box waits this long for the next key before asking.
const SEARCH_WAIT_MS = 250;
// A burst of changes on the feed is counted once, this long after it.
const RECOUNT_WAIT_MS = 300;

const $ = (id) => document.getElementById(id);
const filtersForm = $("filters");
const statusFilter = $("status-filter");
const mineFilter = $("mine-filter");
const archivedFilter = $("archived-filter");
const searchBox = $("search");
const columnsBox = $("columns");
const errorBox = $("board-error");
const noticeBox = $("board-notice");
const feedState = $("feed-state");
const clearButton = $("clear-board");

$("mine-field").hidden = !me.isAdmin;
clearButton.hidden = !me.isAdmin;

// --- filters in the URL ---------------------------------------------------------

function readFilters() {
  const params = new URLSearchParams(location.search);
  const status = STATUSES.includes(params.get("status")) ? params.get("status") : "";
  const on = (name) => ["1", "true"].includes(params.get(name) || "");
  const q = (params.get("q") || "").trim().slice(0, 200);
  return { status, mine: me.isAdmin && on("mine"), archived: on("archived"), q };
}

function filtersUrl({ status, mine, archived, q }) {
  const params = new URLSearchParams();
  if (status) params.set("status", status);
  if (mine) params.set("mine", "1");
  if (archived && !status) params.set("archived", "1");
  if (q) params.set("q", q);
  const query = params.toString();
  return query ? `/board?${query}` : "/board";
}

function showFilters(filters) {
  statusFilter.value = filters.status;
  mineFilter.value = filters.mine ? "1" : "";
  archivedFilter.checked = filters.archived || filters.status === "archived";
  archivedFilter.disabled = Boolean(filters.status);
  // Not while the user types in it: that would move the caret.
  if (document.activeElement !== searchBox) searchBox.value = filters.q;
}

function filtersFromForm() {
  return { status: statusFilter.value, mine: mineFilter.value === "1", archived: archivedFilter.checked,
    q: searchBox.value.trim() };
}

function changeFilters() {
  const url = filtersUrl(filtersFromForm());
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  start();
}

filtersForm.addEventListener("change", (event) => {
  if (event.target !== searchBox) changeFilters();
});
let searchTimer = null;
searchBox.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    if (searchBox.value.trim() !== filters.q) changeFilters();
  }, SEARCH_WAIT_MS);
});
filtersForm.addEventListener("submit", (event) => {
  event.preventDefault();
  changeFilters();
});
window.addEventListener("popstate", start);

// --- what is shown ---------------------------------------------------------------

let filters = readFilters();
let generation = 0; // bumped on every (re)start; answers for an older one are dropped
let columns = new Map(); // status → Column
const shown = new Map(); // job id → the Column showing it
const newest = new Map(); // job id → the latest updatedAt seen, so an old event never undoes a newer state

function isNewer(job) {
  const known = newest.get(job.id);
  if (known && known > job.updatedAt) return false;
  newest.set(job.id, job.updatedAt);
  return true;
}

/** Whether `job` is one the search keeps (as the server's `q` does). */
function matchesSearch(job) {
  if (!filters.q) return true;
  const q = filters.q.toLowerCase();
  return [job.title, job.templateId, job.owner?.email].some((text) => (text || "").toLowerCase().includes(q));
}

function cardFor(job, column) {
  const showOwner = me.isAdmin && !filters.mine && job.owner && job.owner.id !== me.id;
  const when = job.status === "waiting" && job.scheduledAt && new Date(job.scheduledAt) > new Date()
    ? el("p", { class: "card-note" }, "Starts ", timeEl(job.scheduledAt))
    : null;
  const reason = job.status === "blocked" && job.blockedReason
    ? el("p", { class: "card-note reason", title: job.blockedReason }, job.blockedReason)
    : null;
  const stopping = job.status === "running" && job.cancelRequested
    ? el("p", { class: "card-note" }, "Stopping its runner…")
    : null;
  return el("li", { class: "card", dataset: { jobId: job.id, status: job.status } },
    // Lists carry previews of the long texts; the job page shows them whole.
    el("h3", {}, el("a", { href: `/jobs/${job.id}`, class: "card-title", title: job.promptPreview || "" }, job.title || `Job ${job.id}`)),
    el("p", { class: "card-meta" },
      el("span", {}, `#${job.id}`),
      el("span", { title: `template ${job.templateId}, agent ${job.agent}` }, job.templateId),
      el("span", { title: "last change" }, timeEl(job.updatedAt)),
      showOwner ? el("span", { class: "owner" }, job.owner.email) : null),
    when, reason, stopping,
    el("div", { class: "card-actions" }, jobActionButtons(job, {
      onDone: (action, updated) => {
        showError(errorBox, "");
        if (updated) place(updated);
        else drop(job.id);
        column.focusAfterChange();
      },
      onError: (message) => showError(errorBox, message),
      refocus: (action) => {
        const node = shown.get(job.id)?.nodes.get(job.id);
        (node?.querySelector(`[data-action="${action}"]`) || node?.querySelector(".card-title"))?.focus();
      },
    })));
}

class Column {
  constructor(status) {
    this.status = status;
    this.jobs = []; // newest (highest id) first
    this.nodes = new Map(); // id → card element
    this.cursor = null;
    this.loaded = false;
    this.loading = false;
    const headingId = `column-${status}`;
    this.count = el("span", { class: "count" }, "…");
    this.total = null; // the real total, from /api/jobs/counts
    this.list = el("ul", { class: "cards", "aria-labelledby": headingId });
    this.empty = el("p", { class: "empty" }, filters.q
      ? `No ${STATUS_LABELS[status].toLowerCase()} jobs match “${filters.q}”.`
      : `No ${STATUS_LABELS[status].toLowerCase()} jobs.`);
    // Until the first page arrives: placeholder cards, and words for a screen reader.
    this.placeholder = el("div", { class: "column-loading" },
      el("p", { class: "loading-note", role: "status" }, "Loading…"),
      ...[0, 1, 2].map(() => el("div", { class: "skeleton-card", "aria-hidden": "true" })));
    this.error = el("p", { class: "error", role: "alert", hidden: true });
    this.more = el("button", { type: "button", class: "secondary small load-more", hidden: true,
      "aria-label": `Load more ${STATUS_LABELS[status].toLowerCase()} jobs` }, "Load more");
    this.more.addEventListener("click", () => whileBusy(this.more, () => this.load()));
    this.node = el("section", { class: `column column-${status}`, "aria-labelledby": headingId, dataset: { status } },
      el("h2", { id: headingId, title: STATUS_HINTS[status] },
        el("span", { class: `dot status-${status}`, "aria-hidden": "true" }),
        STATUS_LABELS[status], " ", this.count),
      this.placeholder, this.list, this.empty, this.error, this.more);
    this.refresh();
  }

  /** The next page (the first, the first time). */
  async load() {
    if (this.loading || (this.loaded && !this.cursor)) return;
    const mine = filters.mine;
    const gen = generation;
    this.loading = true;
    this.more.textContent = "Loading…";
    showError(this.error, "");
    const params = new URLSearchParams({ status: this.status, limit: String(PAGE) });
    if (mine) params.set("mine", "1");
    if (filters.q) params.set("q", filters.q);
    if (this.cursor) params.set("cursor", this.cursor);
    try {
      const page = await api(`/api/jobs?${params}`);
      if (gen !== generation) return;
      this.cursor = page.nextCursor;
      this.loaded = true;
      for (const job of page.jobs) {
        if (!isNewer(job) || job.status !== this.status) continue;
        // A card the feed put here already, or one it moved from elsewhere.
        const other = shown.get(job.id);
        if (other && other !== this) other.remove(job.id);
        if (this.nodes.has(job.id)) this.replace(job);
        else this.append(job);
      }
    } catch (error) {
      if (gen !== generation) return;
      showError(this.error, `Cannot load these jobs: ${error.message}`);
    } finally {
      if (gen === generation) {
        this.loading = false;
        this.more.textContent = this.loaded ? "Load more" : "Try again";
        this.refresh();
        updateBoardEmpty();
      }
    }
  }

  /** Whether a job in this status belongs among the loaded cards (not in a later page). */
  accepts(job) {
    if (!this.loaded) return false;
    const last = this.jobs[this.jobs.length - 1];
    return !this.cursor || !last || job.id > last.id;
  }

  append(job) {
    const node = cardFor(job, this);
    this.jobs.push(job);
    this.nodes.set(job.id, node);
    this.list.append(node);
    shown.set(job.id, this);
  }

  insert(job, { fresh = false } = {}) {
    const node = cardFor(job, this);
    if (fresh) node.classList.add("fresh");
    let index = this.jobs.findIndex((other) => other.id < job.id);
    if (index < 0) index = this.jobs.length;
    const before = this.jobs[index];
    this.jobs.splice(index, 0, job);
    this.nodes.set(job.id, node);
    this.list.insertBefore(node, before ? this.nodes.get(before.id) : null);
    shown.set(job.id, this);
    this.refresh();
  }

  replace(job) {
    const old = this.nodes.get(job.id);
    const index = this.jobs.findIndex((other) => other.id === job.id);
    if (!old || index < 0) return;
    const focused = old.contains(document.activeElement) ? document.activeElement : null;
    const node = cardFor(job, this);
    this.jobs[index] = job;
    this.nodes.set(job.id, node);
    old.replaceWith(node);
    if (focused) {
      const again = focused.dataset.action && node.querySelector(`[data-action="${focused.dataset.action}"]`);
      (again || node.querySelector(".card-title")).focus();
    }
  }

  remove(id) {
    const node = this.nodes.get(id);
    if (!node) return;
    const hadFocus = node.contains(document.activeElement);
    const next = node.nextElementSibling || node.previousElementSibling;
    node.remove();
    this.nodes.delete(id);
    this.jobs = this.jobs.filter((job) => job.id !== id);
    if (shown.get(id) === this) shown.delete(id);
    if (hadFocus) (next?.querySelector(".card-title") || this.node.querySelector("h2")).focus?.();
    this.refresh();
  }

  /** After an action, keep keyboard focus somewhere sensible on the page. */
  focusAfterChange() {
    if (!document.activeElement || document.activeElement === document.body) {
      (this.list.querySelector(".card-title") || statusFilter).focus();
    }
  }

  refresh() {
    const n = this.jobs.length;
    // The loaded cards are a lower bound while the total is on its way.
    const total = this.total === null ? null : Math.max(this.total, n);
    this.count.textContent = total === null ? "…" : String(total);
    this.count.title = total === null ? "counting…"
      : total > n ? `${plural(total, "job")}, ${n} shown` : plural(total, "job");
    this.placeholder.hidden = this.loaded || !this.error.hidden;
    this.empty.hidden = !this.loaded || n > 0;
    this.more.hidden = !(this.cursor || (!this.loaded && !this.loading && !this.error.hidden));
  }
}

/** Show `job` where its status says, or nowhere if that column does not show it. */
function place(job, { fresh = false } = {}) {
  if (!isNewer(job)) return;
  const from = shown.get(job.id);
  const to = matchesSearch(job) ? columns.get(job.status) : null;
  if (from && from === to) {
    from.replace(job);
  } else {
    if (from) from.remove(job.id);
    if (to && to.accepts(job)) to.insert(job, { fresh });
  }
  updateBoardEmpty();
  recountSoon();
}

function drop(id) {
  shown.get(id)?.remove(id);
  newest.set(id, "\uffff"); // deleted: nothing later brings it back
  updateBoardEmpty();
  recountSoon();
}

let boardEmpty = null;

function updateBoardEmpty() {
  const all = [...columns.values()];
  const empty = all.length > 0 && all.every((c) => c.loaded && c.jobs.length === 0 && !c.cursor);
  columnsBox.setAttribute("aria-busy", String(!all.every((c) => c.loaded || !c.error.hidden)));
  if (empty && !boardEmpty) {
    boardEmpty = el("div", { class: "board-empty" },
      el("p", {}, filters.q ? `No jobs match “${filters.q}”${filters.mine ? " of yours" : ""}.` : filters.status
        ? `No ${STATUS_LABELS[filters.status].toLowerCase()} jobs${filters.mine ? " of yours" : ""}.`
        : `No jobs on the board${filters.mine ? " of yours" : ""} yet.`),
      el("p", {}, el("a", { href: "/templates" }, "Start a crew from a template"),
        " or ", el("a", { href: "/schedules" }, "schedule one"), "."));
    columnsBox.before(boardEmpty);
  } else if (!empty && boardEmpty) {
    boardEmpty.remove();
    boardEmpty = null;
  }
  columnsBox.classList.toggle("all-empty", empty);
}

// --- the live feed -----------------------------------------------------------------

let feed = null; // the AbortController of the open feed

function apply(change) {
  if (change.kind === "deleted") {
    for (const id of change.data?.jobIds || []) drop(id);
  } else if (change.job) {
    place(change.job, { fresh: true });
  }
}

async function follow(gen, signal, whenOpen) {
  const query = filters.mine ? "?mine=1" : "";
  const setState = (state) => {
    if (gen !== generation) return;
    if (state === "open") {
      feedState.textContent = "Live: changes show up as they happen.";
      feedState.dataset.state = "live";
      whenOpen();
    } else {
      feedState.textContent = "Reconnecting to the live feed…";
      feedState.dataset.state = "retrying";
    }
  };
  try {
    for await (const frame of stream(`/api/board/events${query}`, { reconnect: "always", signal, onStatus: setState })) {
      if (gen !== generation) return;
      if (frame.type === "event" && frame.data) pending.push(frame.data);
      if (loadedOnce) flush();
    }
  } catch (error) {
    if (signal.aborted || gen !== generation) return;
    feedState.textContent = `The live feed stopped: ${error.message}. Reload the page to resume.`;
    feedState.dataset.state = "down";
    whenOpen();
  }
}

let pending = [];
let loadedOnce = false;

function flush() {
  const changes = pending;
  pending = [];
  for (const change of changes) apply(change);
}

// --- real totals ---------------------------------------------------------------------

let recountTimer = null;

function recountSoon() {
  clearTimeout(recountTimer);
  recountTimer = setTimeout(() => recount(generation), RECOUNT_WAIT_MS);
}

async function recount(gen) {
  const params = new URLSearchParams();
  if (filters.mine) params.set("mine", "1");
  if (filters.q) params.set("q", filters.q);
  try {
    const { counts } = await api(`/api/jobs/counts${params.size ? `?${params}` : ""}`);
    if (gen !== generation) return;
    for (const column of columns.values()) {
      column.total = counts[column.status] ?? null;
      column.refresh();
    }
  } catch {
    // The headings keep their last totals; the next change asks again.
  }
}

// --- start and restart -------------------------------------------------------------

async function start() {
  generation += 1;
  const gen = generation;
  feed?.abort();
  filters = readFilters();
  showFilters(filters);
  shown.clear();
  newest.clear();
  pending = [];
  loadedOnce = false;
  showError(errorBox, "");
  document.title = filters.status ? `${STATUS_LABELS[filters.status]} jobs · crewboard` : "Board · crewboard";

  const statuses = filters.status ? [filters.status]
    : filters.archived ? [...BOARD_COLUMNS, "archived"] : BOARD_COLUMNS;
  columns = new Map(statuses.map((status) => [status, new Column(status)]));
  replaceChildren(columnsBox, [...columns.values()].map((c) => c.node));
  columnsBox.dataset.count = String(columns.size);
  boardEmpty?.remove();
  boardEmpty = null;
  updateBoardEmpty();

  // Open the feed first, so nothing that happens while the columns load is missed.
  feed = new AbortController();
  feedState.textContent = "Connecting to the live feed…";
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, FEED_WAIT_MS);
    follow(gen, feed.signal, () => { clearTimeout(timer); resolve(); });
  });
  if (gen !== generation) return;
  await Promise.all([recount(gen), ...[...columns.values()].map((c) => c.load())]);
  if (gen !== generation) return;
  loadedOnce = true;
  flush();
}

// After the server was away, every column again (with what changed meanwhile)
// and none of the errors that said it could not be reached.
onReconnect(() => start());

// --- clearing (admins) ---------------------------------------------------------------

clearButton.addEventListener("click", () => whileBusy(clearButton, async () => {
  try {
    const answer = await confirmDialog({
      title: "Clear the board?",
      message: "This deletes jobs of every user, with their runs, logs and artifacts. "
        + "Running jobs, and what they depend on, are kept; what depends on a deleted job goes too.",
      confirmLabel: "Clear",
      danger: true,
      fields: [{
        name: "status", label: "Which jobs", type: "select", value: filters.status,
        options: [{ value: "", label: "Every status" },
          ...STATUSES.map((s) => ({ value: s, label: `${STATUS_LABELS[s]} jobs` }))],
      }],
    });
    if (!answer) return;
    showError(errorBox, "");
    const query = answer.status ? `?status=${encodeURIComponent(answer.status)}` : "";
    const result = await api(`/api/jobs/clear${query}`, { method: "POST" });
    noticeBox.textContent = `Deleted ${plural(result.deleted.length, "job")}`
      + (result.skipped.length ? `; kept ${result.skipped.length} that are running or needed by a running job.` : ".");
    noticeBox.hidden = false;
    for (const id of result.deleted) drop(id);
  } catch (error) {
    showError(errorBox, `Cannot clear the board: ${error.message}`);
  }
}));

start();
