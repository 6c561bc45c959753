// Schedules: the list (enable, disable, run now, delete, and the jobs each
// one started), and an editor for new and existing schedules that previews
// the rule's next fire times as you type, in the schedule's zone and in UTC.
// The URL says what is open: ?new=1[&template=<id>], ?edit=<id>, or
// ?schedule=<id> (that schedule's jobs).

import { api, ApiError, onReconnect } from "/static/api.js";
import { confirmDialog, whileBusy } from "/static/dialog.js";
import { el, replaceChildren, showError, timeEl } from "/static/dom.js";
import { FormErrors } from "/static/formerror.js";
import { browserTimeZone, formatInZone, knownTimeZones, plural, statusBadge } from "/static/format.js";
import { InputsForm, setFieldError } from "/static/inputsform.js";
import { clearErrorsOnEdit, takeDraft } from "/static/drafts.js";
import { stream } from "/static/sse.js";
import { startShell } from "/static/shell.js";

const me = await startShell({ page: "schedules" });

const PREVIEW_COUNT = 5;
const PREVIEW_DELAY_MS = 300;
const JOBS_PAGE = 10;

const $ = (id) => document.getElementById(id);
const errorBox = $("schedules-error");
const noticeBox = $("schedules-notice");
const list = $("schedule-list");
const editor = $("editor");
const form = $("schedule-form");
const nameInput = $("schedule-name");
const templateSelect = $("schedule-template");
const ruleInput = $("schedule-rule");
const zoneInput = $("schedule-timezone");
const overlapSelect = $("schedule-overlap");
const enabledBox = $("schedule-enabled");
const saveButton = $("save-schedule");
const formError = $("form-error");
const previewState = $("preview-state");
const previewList = $("preview-list");

let templates = [];
let inputs = null; // the InputsForm of the chosen template
let editing = null; // the schedule being edited, or null for a new one
const cards = new Map(); // schedule id → ScheduleCard

// --- small views ------------------------------------------------------------------------

function offsetOf(local) {
  const match = /([+-]\d\d:\d\d|Z)$/.exec(local || "");
  return match ? (match[1] === "Z" ? "UTC" : `UTC${match[1]}`) : "";
}

/** A fire time: wall time in the schedule's zone (with its offset) and UTC. */
function fireTime(utc, zone, local = null) {
  return el("span", { class: "fire" },
    el("time", { datetime: utc, class: "fire-local" }, formatInZone(utc, zone, local),
      local ? ` (${offsetOf(local)})` : ` ${zone}`),
    el("span", { class: "fire-utc" }, `${formatInZone(utc, "UTC")} UTC`));
}

function inputsSummary(values) {
  const parts = Object.entries(values || {}).map(([key, value]) => {
    const text = String(value);
    return `${key} = ${text.length > 60 ? `${text.slice(0, 59)}…` : text}`;
  });
  return parts.length ? parts.join("; ") : "none";
}

function templateName(id) {
  const template = templates.find((t) => t.id === id);
  return template ? template.name || id : id;
}

// --- the list ----------------------------------------------------------------------------

class ScheduleCard {
  constructor(schedule) {
    this.summary = el("div", { class: "schedule-summary" });
    this.actions = el("div", { class: "schedule-actions", role: "group", "aria-label": "Actions" });
    this.jobsList = el("ul", { class: "spawned-jobs" });
    this.jobsEmpty = el("p", { class: "empty", hidden: true }, "It has not started any crew yet.");
    this.jobsError = el("p", { class: "error", role: "alert", hidden: true });
    this.more = el("button", { type: "button", class: "secondary small", hidden: true }, "Load more");
    this.more.addEventListener("click", () => whileBusy(this.more, () => this.loadJobs()));
    this.jobsSummary = el("summary", {}, "Jobs it started");
    this.jobs = el("details", { class: "spawned" }, this.jobsSummary, this.jobsList, this.jobsEmpty, this.jobsError, this.more);
    this.jobs.addEventListener("toggle", () => {
      if (this.jobs.open && !this.loaded) this.loadJobs({ fresh: true });
    });
    this.node = el("li", { class: "schedule", id: `schedule-${schedule.id}` }, this.summary, this.actions, this.jobs);
    this.cursor = null;
    this.loaded = false;
    this.loading = false;
    this.update(schedule);
  }

  update(schedule) {
    // A refresh renders the actions anew: keyboard focus on one stays on it.
    const focused = this.actions.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    this.schedule = schedule;
    const s = schedule;
    this.node.dataset.enabled = String(s.enabled);
    replaceChildren(this.summary,
      el("div", { class: "schedule-head" },
        el("h3", {}, s.name),
        el("span", { class: `badge ${s.enabled ? "on" : "off"}` }, s.enabled ? "Enabled" : "Paused")),
      el("p", { class: "schedule-rule" },
        el("code", {}, s.rule), " in ", el("strong", {}, s.timezone),
        " · starts ", el("a", { href: `/templates?template=${encodeURIComponent(s.templateId)}` }, templateName(s.templateId)),
        s.overlap === "allow" ? " · even while its last crew works" : ""),
      el("dl", { class: "facts schedule-facts" },
        el("dt", {}, "Next"), el("dd", {}, s.nextRunAt ? fireTime(s.nextRunAt, s.timezone) : "— (paused)"),
        el("dt", {}, "Last"), el("dd", {}, s.lastRunAt ? timeEl(s.lastRunAt) : "never"),
        el("dt", {}, "Inputs"), el("dd", { class: "schedule-inputs-summary" }, inputsSummary(s.inputs)),
        me.isAdmin && s.owner.id !== me.id ? [el("dt", {}, "Owner"), el("dd", {}, s.owner.email)] : null));
    replaceChildren(this.actions,
      this.button("Edit", "secondary", () => openEditor(s.id, { push: true })),
      s.enabled
        ? this.button("Pause", "secondary", () => this.toggle(false), "toggle")
        : this.button("Enable", "secondary", () => this.toggle(true), "toggle"),
      this.button("Run now", "secondary", () => this.runNow()),
      this.button("Delete…", "danger", () => this.remove()));
    if (focused) this.actions.querySelector(`[data-action="${focused}"]`)?.focus();
  }

  /** A button that is disabled while its action is in flight. */
  button(text, kind, act, action = text.replace("…", "").toLowerCase()) {
    const verb = text.replace("…", "");
    const button = el("button", { type: "button", class: `${kind} small`, "aria-label": `${verb} “${this.schedule.name}”`, dataset: { action } }, text);
    button.addEventListener("click", () => whileBusy(button, async () => {
      showError(errorBox, "");
      try {
        await act();
      } catch (error) {
        showError(errorBox, `${verb} “${this.schedule.name}” failed: ${error.message}`);
      }
    }));
    return button;
  }

  async toggle(enable) {
    const updated = await api(`/api/schedules/${this.schedule.id}/${enable ? "enable" : "disable"}`, { method: "POST" });
    this.refocus(() => this.update(updated));
  }

  async runNow() {
    const crew = await api(`/api/schedules/${this.schedule.id}/run-now`, { method: "POST" });
    showNotice(`“${this.schedule.name}” started crew #${crew.crewId} (${plural(crew.jobIds.length, "job")}).`,
      el("a", { href: `/jobs/${crew.jobIds[0]}` }, "Open its first job"));
    this.jobs.open = true;
    await this.loadJobs({ fresh: true });
  }

  async remove() {
    const answer = await confirmDialog({
      title: `Delete the schedule “${this.schedule.name}”?`,
      message: "It starts no more crews. The jobs it already started stay on the board.",
      confirmLabel: "Delete",
      danger: true,
    });
    if (!answer) return;
    const id = this.schedule.id;
    // Nothing refreshes it from now on: a refresh would ask for it just as
    // it is gone, and the browser would report the 404 as an error.
    deleting.add(id);
    clearTimeout(pendingRefresh.get(id));
    pendingRefresh.delete(id);
    try {
      await api(`/api/schedules/${id}`, { method: "DELETE" });
    } finally {
      deleting.delete(id);
    }
    if (editing?.id === id) closeEditor({ push: true });
    dropCard(id);
    showNotice(`Deleted the schedule “${this.schedule.name}”; its jobs stay on the board.`);
  }

  /** Re-render without losing keyboard focus: it goes to the same action (or the first). */
  refocus(change, action = "toggle") {
    const active = document.activeElement;
    const had = !active || active === document.body || this.actions.contains(active);
    change();
    if (had) (this.actions.querySelector(`[data-action="${action}"]`) || this.actions.querySelector("button"))?.focus();
  }

  async loadJobs({ fresh = false } = {}) {
    if (this.loading) return;
    this.loading = true;
    showError(this.jobsError, "");
    const params = new URLSearchParams({ limit: String(JOBS_PAGE) });
    if (!fresh && this.cursor) params.set("cursor", this.cursor);
    try {
      const page = await api(`/api/schedules/${this.schedule.id}/jobs?${params}`);
      if (fresh) this.jobsList.replaceChildren();
      this.jobsList.append(...page.jobs.map((job) => el("li", {},
        el("a", { href: `/jobs/${job.id}` }, job.title || `Job #${job.id}`), " ", statusBadge(job.status), " ",
        el("span", { class: "hint" }, timeEl(job.createdAt)))));
      this.cursor = page.nextCursor;
      this.loaded = true;
    } catch (error) {
      showError(this.jobsError, `Cannot list its jobs: ${error.message}`);
    } finally {
      this.loading = false;
      this.more.hidden = !this.cursor;
      this.jobsEmpty.hidden = !this.loaded || this.jobsList.children.length > 0;
    }
  }
}

function showNotice(text, ...extra) {
  replaceChildren(noticeBox, el("p", {}, text, extra.length ? " " : null, extra));
  noticeBox.hidden = false;
}

function dropCard(id) {
  cards.get(id)?.node.remove();
  cards.delete(id);
  $("list-empty").hidden = cards.size > 0;
}

async function loadList() {
  try {
    const schedules = await api("/api/schedules");
    for (const schedule of schedules) {
      const card = cards.get(schedule.id);
      if (card) card.update(schedule);
      else {
        const fresh = new ScheduleCard(schedule);
        cards.set(schedule.id, fresh);
        list.append(fresh.node);
      }
    }
    for (const id of [...cards.keys()]) if (!schedules.some((s) => s.id === id)) dropCard(id);
  } catch (error) {
    showError(errorBox, `Cannot list the schedules: ${error.message}`);
  }
  $("list-loading").hidden = true;
  $("list-empty").hidden = cards.size > 0;
}

// --- the editor ----------------------------------------------------------------------------

function fillTemplates(selected) {
  const valid = templates.filter((t) => t.valid);
  const options = valid.map((t) => el("option", { value: t.id }, t.name || t.id));
  if (selected && !valid.some((t) => t.id === selected)) {
    options.push(el("option", { value: selected }, `${selected} (not available)`));
  }
  replaceChildren(templateSelect, options);
  if (selected) templateSelect.value = selected;
}

function showInputs(values = {}) {
  const template = templates.find((t) => t.id === templateSelect.value);
  $("schedule-template-hint").textContent = editing
    ? "A schedule keeps its template; make a new schedule for another."
    : template?.description || "";
  inputs = new InputsForm($("schedule-inputs"), template?.inputs, { idPrefix: "schedule-input", values });
}

templateSelect.addEventListener("change", () => showInputs());

function clearFormErrors() {
  showError(formError, "");
  for (const control of [nameInput, templateSelect, ruleInput, zoneInput, overlapSelect]) setFieldError(control, "");
  inputs?.clearErrors();
}

/** Open the editor: for a new schedule (id null) or an existing one. */
async function openEditor(id, { push = false, template = null } = {}) {
  clearFormErrors();
  editing = null;
  if (id !== null) {
    let schedule = cards.get(id)?.schedule;
    try {
      schedule = await api(`/api/schedules/${id}`);
    } catch (error) {
      if (!schedule) {
        showError(errorBox, error.status === 404 ? "There is no such schedule, or it is not yours." : error.message);
        closeEditor();
        return;
      }
    }
    editing = schedule;
  }
  const s = editing;
  $("editor-heading").textContent = s ? `Edit “${s.name}”` : "New schedule";
  saveButton.textContent = s ? "Save the changes" : "Create the schedule";
  // What the templates page had typed, when it sent us here for this template.
  const draft = s ? null : takeDraft("schedule", (d) => d.templateId === template);
  nameInput.value = s ? s.name : draft?.title || "";
  fillTemplates(s ? s.templateId : template || templates.find((t) => t.valid)?.id);
  templateSelect.disabled = Boolean(s);
  showInputs(s ? s.inputs : draft?.inputs || {});
  ruleInput.value = s ? s.rule : "";
  zoneInput.value = s ? s.timezone : browserTimeZone();
  overlapSelect.value = s ? s.overlap : "skip";
  $("schedule-enabled-field").hidden = Boolean(s);
  enabledBox.checked = true;
  editor.hidden = false;
  $("new-schedule").hidden = true;
  $("list-empty").hidden = true;
  const url = s ? `/schedules?edit=${s.id}` : `/schedules?new=1${template ? `&template=${encodeURIComponent(template)}` : ""}`;
  if (push && url !== location.pathname + location.search) history.pushState(null, "", url);
  preview();
  editor.scrollIntoView({ block: "start" });
  nameInput.focus();
}

function closeEditor({ push = false } = {}) {
  editor.hidden = true;
  editing = null;
  $("new-schedule").hidden = false;
  $("list-empty").hidden = cards.size > 0 || !$("list-loading").hidden;
  previewAbort?.abort();
  if (push && location.search) history.pushState(null, "", "/schedules");
}

$("new-schedule").addEventListener("click", (event) => {
  event.preventDefault();
  noticeBox.hidden = true;
  openEditor(null, { push: true });
});
$("cancel-edit").addEventListener("click", () => {
  const id = editing?.id;
  closeEditor({ push: true });
  (id && cards.get(id)?.actions.querySelector("button") || $("new-schedule")).focus();
});

// --- the preview ---------------------------------------------------------------------------

let previewTimer = null;
let previewAbort = null;

function preview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(runPreview, PREVIEW_DELAY_MS);
}

async function runPreview() {
  previewAbort?.abort();
  const rule = ruleInput.value.trim();
  const zone = zoneInput.value.trim();
  if (!rule) {
    setFieldError(ruleInput, "");
    previewList.replaceChildren();
    previewState.textContent = "Type a rule to see when it fires.";
    return;
  }
  const controller = (previewAbort = new AbortController());
  previewState.textContent = "Working out the fire times…";
  const params = new URLSearchParams({ rule, count: String(PREVIEW_COUNT) });
  if (zone) params.set("timezone", zone);
  try {
    const { times } = await api(`/api/schedules/preview?${params}`, { signal: controller.signal });
    if (controller.signal.aborted) return;
    setFieldError(ruleInput, "");
    setFieldError(zoneInput, "");
    replaceChildren(previewList, times.map((t) => el("li", {}, fireTime(t.utc, zone || "UTC", t.local))));
    previewState.textContent = times.length
      ? `The next ${plural(times.length, "time")} it fires, in ${zone || "UTC"} and in UTC:`
      : "This rule never fires.";
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    previewList.replaceChildren();
    const fields = error instanceof ApiError ? error.details?.fields || {} : {};
    setFieldError(ruleInput, fields.rule || "");
    setFieldError(zoneInput, fields.timezone || "");
    previewState.textContent = fields.rule || fields.timezone
      ? "Fix the marked field to see the fire times."
      : `Cannot preview: ${error.message}`;
  }
}

ruleInput.addEventListener("input", preview);
zoneInput.addEventListener("input", preview);
zoneInput.addEventListener("change", preview);

// --- saving ----------------------------------------------------------------------------------

const FIELD_CONTROLS = { name: nameInput, templateId: templateSelect, rule: ruleInput, timezone: zoneInput, overlap: overlapSelect };
const formErrors = new FormErrors(form, { box: formError, fields: FIELD_CONTROLS, inputs: () => inputs });

form.addEventListener("submit", (event) => {
  event.preventDefault();
  whileBusy(saveButton, save);
});
clearErrorsOnEdit(form, setFieldError);

async function save() {
  clearFormErrors();
  const { values, problems } = inputs.read();
  if (Object.keys(problems).length) {
    inputs.showErrors(problems);
    inputs.firstInvalid()?.focus();
    return;
  }
  const body = {
    name: nameInput.value.trim(),
    inputs: values,
    rule: ruleInput.value.trim(),
    timezone: zoneInput.value.trim(),
    overlap: overlapSelect.value,
  };
  if (!editing) {
    body.templateId = templateSelect.value;
    body.enabled = enabledBox.checked;
  }
  try {
    const saved = editing
      ? await api(`/api/schedules/${editing.id}`, { method: "PATCH", body })
      : await api("/api/schedules", { method: "POST", body });
    const existing = cards.get(saved.id);
    if (existing) existing.update(saved);
    else {
      const card = new ScheduleCard(saved);
      cards.set(saved.id, card);
      list.append(card.node);
      $("list-empty").hidden = true;
    }
    showNotice(editing ? `Saved “${saved.name}”.` : `Created “${saved.name}”.`);
    closeEditor({ push: true });
    cards.get(saved.id).actions.querySelector("button")?.focus();
    cards.get(saved.id).node.scrollIntoView({ block: "nearest" });
  } catch (error) {
    formErrors.show(error, { prefix: "Not saved" });
  }
}

// --- staying current -----------------------------------------------------------------------

const pendingRefresh = new Map(); // schedule id → timer
const deleting = new Set(); // schedule ids whose delete is under way

function refreshSoon(id) {
  if (!cards.has(id) || deleting.has(id) || pendingRefresh.has(id)) return;
  pendingRefresh.set(id, setTimeout(async () => {
    pendingRefresh.delete(id);
    const card = cards.get(id);
    if (!card || deleting.has(id)) return;
    try {
      card.update(await api(`/api/schedules/${id}`));
      if (card.jobs.open) await card.loadJobs({ fresh: true });
    } catch (error) {
      if (error.status === 404) dropCard(id);
    }
  }, 400));
}

async function followFeed() {
  try {
    for await (const frame of stream("/api/board/events", { reconnect: "always" })) {
      const change = frame.data;
      if (frame.type !== "event" || !change) continue;
      const id = change.scheduleId ?? change.job?.scheduleId;
      if (id !== null && id !== undefined) refreshSoon(id);
    }
  } catch {
    // Without the feed the page still works; onReconnect brings it back.
    feedStopped = true;
  }
}

let feedStopped = false;

// After the server was away: every card again, without the error that said so.
onReconnect(() => {
  showError(errorBox, "");
  loadList();
  if (feedStopped) {
    feedStopped = false;
    followFeed();
  }
});

// --- start ---------------------------------------------------------------------------------

function fromUrl() {
  const params = new URLSearchParams(location.search);
  const edit = Number(params.get("edit"));
  if (params.get("new")) openEditor(null, { template: params.get("template") });
  else if (Number.isSafeInteger(edit) && edit > 0) openEditor(edit);
  else closeEditor();
  const shown = Number(params.get("schedule"));
  const card = cards.get(shown);
  if (card) {
    card.jobs.open = true;
    card.node.classList.add("highlight");
    card.node.scrollIntoView({ block: "start" });
  }
}

window.addEventListener("popstate", fromUrl);

{
  const zones = knownTimeZones();
  if (!zones.includes("UTC")) zones.unshift("UTC");
  replaceChildren($("timezones"), zones.map((zone) => el("option", { value: zone })));
}

try {
  templates = await api("/api/templates");
} catch (error) {
  showError(errorBox, `Cannot load the templates: ${error.message}`);
}
await loadList();
fromUrl();
followFeed();
