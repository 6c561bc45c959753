// Templates: pick one (?template=<id> in the URL), fill in the form made from
// its input schema, and start its crew now or at a chosen local time (sent as
// RFC 3339 with the browser's offset). The server's field errors appear next
// to their fields; a new crew links to its jobs.

import { api, onReconnect } from "/static/api.js";
import { el, replaceChildren, showError, timeEl } from "/static/dom.js";
import { browserTimeZone, dateToLocalInput, localInputToIso, plural, statusBadge } from "/static/format.js";
import { whileBusy } from "/static/dialog.js";
import { clearErrorsOnEdit, saveDraft } from "/static/drafts.js";
import { FormErrors } from "/static/formerror.js";
import { InputsForm, setFieldError } from "/static/inputsform.js";
import { startShell } from "/static/shell.js";

await startShell({ page: "templates" });

const $ = (id) => document.getElementById(id);
const listBox = $("template-list");
const form = $("crew-form");
const startButton = $("start-button");
const whenAt = $("when-at");
const titleInput = $("crew-title");
const formError = $("form-error");
const created = $("created");

let templates = [];
let chosen = null; // the template whose form is shown
let inputs = null; // its InputsForm
const formErrors = new FormErrors(form, {
  box: formError, fields: { title: titleInput, scheduledAt: whenAt }, inputs: () => inputs,
});

// --- the list ------------------------------------------------------------------------

function chosenId() {
  return new URLSearchParams(location.search).get("template") || "";
}

function showList() {
  const valid = templates.filter((t) => t.valid);
  const invalid = templates.filter((t) => !t.valid);
  replaceChildren(listBox, valid.map((t) => el("li", {},
    el("a", {
      href: `/templates?template=${encodeURIComponent(t.id)}`,
      dataset: { template: t.id },
      onclick: (event) => {
        if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        if (chosenId() !== t.id) history.pushState(null, "", `/templates?template=${encodeURIComponent(t.id)}`);
        choose({ focus: true });
      },
    }, el("strong", {}, t.name || t.id), el("span", { class: "hint" }, t.description || "")))));
  $("list-empty").hidden = templates.length > 0;
  $("invalid-section").hidden = invalid.length === 0;
  replaceChildren($("invalid-list"), invalid.map((t) => el("li", { class: "invalid" },
    el("strong", {}, t.name || t.id),
    el("p", { class: "field-error" }, t.error || "invalid"))));
}

function markChosen() {
  for (const link of listBox.querySelectorAll("a")) {
    if (link.dataset.template === chosen?.id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// --- the form --------------------------------------------------------------------------

function choose({ focus = false } = {}) {
  const id = chosenId();
  showError(formError, "");
  const template = templates.find((t) => t.id === id) || null;
  chosen = template && template.valid ? template : null;
  markChosen();
  document.querySelector(".templates-layout").classList.toggle("chosen", Boolean(chosen));
  if (!chosen) {
    form.hidden = true;
    $("start-heading").textContent = "Pick a template";
    $("template-description").textContent = id && template
      ? `“${template.name || id}” has an error and cannot be used: ${template.error}`
      : id ? `There is no template “${id}”.` : "Its inputs appear here.";
    document.title = "Templates · crewboard";
    return;
  }
  document.title = `${chosen.name || chosen.id} · Templates · crewboard`;
  $("start-heading").textContent = chosen.name || chosen.id;
  $("template-description").textContent = chosen.description || "";
  inputs = new InputsForm($("inputs"), chosen.inputs, { idPrefix: "input" });
  titleInput.value = "";
  setFieldError(titleInput, "");
  // Each template starts "Now": a time chosen for another crew is not carried over.
  $("when-now").checked = true;
  whenAt.value = "";
  showWhen();
  $("schedule-link").href = `/schedules?new=1&template=${encodeURIComponent(chosen.id)}`;
  form.hidden = false;
  if (focus) (form.querySelector("#inputs input, #inputs textarea, #inputs select") || titleInput).focus();
}

window.addEventListener("popstate", () => choose());

// "Schedule it instead…" takes what was typed along to the schedule editor.
$("schedule-link").addEventListener("click", () => {
  if (!chosen || !inputs) return;
  saveDraft("schedule", { templateId: chosen.id, inputs: inputs.read().values, title: titleInput.value.trim() });
});
clearErrorsOnEdit(form, setFieldError);

function showWhen() {
  const later = $("when-later").checked;
  $("when-at-field").hidden = !later;
  if (later && !whenAt.value) {
    const inAnHour = new Date(Date.now() + 60 * 60 * 1000);
    inAnHour.setMinutes(0, 0, 0);
    whenAt.value = dateToLocalInput(inAnHour);
  }
  if (!later) setFieldError(whenAt, "");
}

$("when-now").addEventListener("change", showWhen);
$("when-later").addEventListener("change", showWhen);
{
  const offset = -new Date().getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "−";
  const hours = String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0");
  const minutes = String(Math.abs(offset) % 60).padStart(2, "0");
  $("when-at-hint").textContent = `Your local time (${browserTimeZone()}, UTC${sign}${hours}:${minutes}).`
    + " The first jobs wait until then; a time in the past means now.";
}

async function showCreated(result, scheduledAt) {
  const { crewId, jobIds } = result;
  $("created-heading").textContent = scheduledAt
    ? `Crew #${crewId} is scheduled with ${plural(jobIds.length, "job")}.`
    : `Crew #${crewId} started with ${plural(jobIds.length, "job")}.`;
  // Titles for the links: a crew has a handful of jobs.
  const jobs = await Promise.all(jobIds.slice(0, 20).map((id) =>
    api(`/api/jobs/${id}`).then((detail) => detail.job).catch(() => ({ id }))));
  replaceChildren($("created-jobs"), jobs.map((job) => el("li", {},
    el("a", { href: `/jobs/${job.id}` }, job.title || `Job #${job.id}`), " ",
    job.status ? statusBadge(job.status) : null,
    job.scheduledAt ? el("span", { class: "hint" }, " starts ", timeEl(job.scheduledAt)) : null)));
  created.hidden = false;
  created.focus();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (chosen) whileBusy(startButton, startCrew);
});

async function startCrew() {
  showError(formError, "");
  created.hidden = true;
  const { values, problems } = inputs.read();
  const later = $("when-later").checked;
  const scheduledAt = later ? localInputToIso(whenAt.value) : null;
  inputs.showErrors(problems);
  setFieldError(whenAt, later && !scheduledAt ? "choose a date and a time" : "");
  if (Object.keys(problems).length || (later && !scheduledAt)) {
    (inputs.firstInvalid() || whenAt).focus();
    return;
  }
  const body = { templateId: chosen.id, inputs: values };
  if (titleInput.value.trim()) body.title = titleInput.value.trim();
  const url = scheduledAt ? `/api/jobs?scheduledAt=${encodeURIComponent(scheduledAt)}` : "/api/jobs";
  startButton.textContent = "Starting…";
  try {
    const result = await api(url, { method: "POST", body });
    inputs.clearErrors();
    setFieldError(titleInput, "");
    setFieldError(whenAt, "");
    await showCreated(result, scheduledAt);
  } catch (error) {
    formErrors.show(error, { prefix: "The crew was not started" });
  } finally {
    startButton.textContent = "Start the crew";
  }
}

// --- start -----------------------------------------------------------------------------

try {
  templates = await api("/api/templates");
} catch (error) {
  showError($("templates-error"), `Cannot load the templates: ${error.message}`);
}
$("list-loading").hidden = true;
showList();
choose();

// After the server was away: the list again (the form keeps what was typed).
onReconnect(async () => {
  try {
    templates = await api("/api/templates");
    showError($("templates-error"), "");
    showList();
    markChosen();
  } catch (error) {
    showError($("templates-error"), `Cannot load the templates: ${error.message}`);
  }
});
