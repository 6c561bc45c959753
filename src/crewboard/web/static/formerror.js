// How every form says that something failed: next to what the user acted on,
// in words that say what to do, and on screen.
//
//   const errors = new FormErrors(form, { fields: { name: nameInput }, inputs });
//   errors.clear();
//   try { await api(...) } catch (error) { errors.show(error, { prefix: "Not saved" }); }
//
// show() puts each of the server's field errors (422 `details.fields`) under
// its control (those of an InputsForm through `inputs`), and the rest in the
// form's error box: the element given as `box`, else the form's own
// `.form-error`, else one made just above the form's buttons. Then it brings
// the first marked field, or the box, into view and focus: a form that
// failed never looks as if nothing happened. The message comes from
// describeError(), which turns the server's answer into a sentence a person
// can act on.

import { ApiError } from "/static/api.js";
import { el } from "/static/dom.js";
import { humanize, setFieldError } from "/static/inputsform.js";

const count = (n) => Number(n).toLocaleString("en-US");

/** A size in bytes for people: "1 MiB", "512 KiB", "900 bytes". */
function bytes(n) {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${count(n / (1 << 20))} MiB`;
  if (n >= 1 << 10 && n % (1 << 10) === 0) return `${count(n / (1 << 10))} KiB`;
  return `${count(n)} bytes`;
}

/** "message too long: 150,000 characters, the limit is 100,000". */
export function tooLong(name, { length, maxLength }) {
  return `${name} too long: ${count(length)} characters, the limit is ${count(maxLength)}`;
}

/**
 * What went wrong, as a sentence that says what to do. `labels` names
 * fields for people ({ message: "message" }); other fields are humanized.
 */
export function describeError(error, { labels = {} } = {}) {
  if (!(error instanceof ApiError)) return String(error?.message || error || "something went wrong");
  const details = error.details || {};
  const label = (key) => labels[key] || humanize(key.replace(/^inputs\./, "")).toLowerCase();
  if (error.status === 409 && details.turnRunning) {
    return "a reply is still being written in another tab — wait or stop it";
  }
  if (error.status === 413) {
    return details.maxBytes
      ? `too large to send: the server takes at most ${bytes(details.maxBytes)} at once; shorten it`
      : "too large to send; shorten it";
  }
  if (error.status === 429 && details.retryAfter) {
    return `${error.message}; try again in ${count(details.retryAfter)} s`;
  }
  const fields = details.fields || {};
  if (error.status === 422 && Object.keys(fields).length) {
    const limits = details.limits || {};
    return Object.entries(fields)
      .map(([key, problem]) => (limits[key] ? tooLong(label(key), limits[key]) : `${label(key)} ${problem}`))
      .join("; ");
  }
  return error.message;
}

/** True when `node` is wholly inside the window. */
function onScreen(node) {
  const box = node.getBoundingClientRect();
  return box.top >= -1 && box.bottom <= (window.innerHeight || document.documentElement.clientHeight) + 1;
}

export class FormErrors {
  constructor(form, { box = null, fields = {}, inputs = null, labels = {} } = {}) {
    this.form = form;
    this.fields = fields; // server field name → control
    this.inputs = inputs; // an InputsForm, or a function returning the current one
    this.labels = labels;
    this.box = box || form.querySelector(".form-error") || this.makeBox();
    // Whether the box speaks only of marked fields: then it goes once they are all edited.
    this.aboutFields = false;
    form.addEventListener("input", (event) => {
      const control = event.target;
      if (!(control instanceof Element) || control.getAttribute("aria-invalid") !== "true") return;
      setFieldError(control, "");
      if (this.aboutFields && !this.form.querySelector('[aria-invalid="true"]')) {
        this.box.textContent = "";
        this.box.hidden = true;
      }
    });
  }

  makeBox() {
    const box = el("p", { class: "error form-error", role: "alert", hidden: true });
    const actions = this.form.querySelector(".form-actions, .actions")
      || this.form.querySelector('button[type="submit"], button:not([type])');
    if (actions && actions.parentElement) actions.before(box);
    else this.form.append(box);
    return box;
  }

  get inputsForm() {
    return typeof this.inputs === "function" ? this.inputs() : this.inputs;
  }

  /** Hide every message this form shows. */
  clear() {
    this.aboutFields = false;
    this.box.textContent = "";
    this.box.hidden = true;
    for (const marked of this.form.querySelectorAll('[aria-invalid="true"]')) setFieldError(marked, "");
    for (const control of Object.values(this.fields)) if (control) setFieldError(control, "");
    this.inputsForm?.clearErrors();
  }

  /**
   * Show `error` (an ApiError, an Error or a message) on the form. Field
   * errors go under their controls; the box says the rest, after `prefix`
   * ("Not saved"). `field` (a control) is marked as the one to fix when the
   * error names none (a check made here, before sending). Returns the
   * message shown in the box.
   */
  show(error, { prefix = "", field = null } = {}) {
    this.clear();
    const details = error instanceof ApiError ? error.details || {} : {};
    const fields = details.fields || {};
    const limits = details.limits || {};
    const rest = this.inputsForm ? this.inputsForm.showErrors(fields) : { ...fields };
    const placed = [];
    for (const [key, problem] of Object.entries(rest)) {
      const control = this.fields[key];
      if (!control) continue;
      const limit = limits[key];
      setFieldError(control, limit
        ? `too long: ${count(limit.length)} characters, the limit is ${count(limit.maxLength)}`
        : problem);
      placed.push(key);
      delete rest[key];
    }
    let text;
    if (Object.keys(fields).length) {
      const others = { ...details, fields: rest };
      text = Object.keys(rest).length
        ? describeError(new ApiError(error.message, error.status, error.code, others), { labels: this.labels })
        : placed.length === 1
          ? describeError(new ApiError(error.message, error.status, error.code, details), { labels: this.labels })
          : "correct the marked fields";
    } else {
      text = describeError(error, { labels: this.labels });
    }
    this.aboutFields = placed.length > 0 && Object.keys(rest).length === 0;
    const message = prefix ? `${prefix}: ${text}` : capitalize(text);
    this.box.textContent = sentence(message);
    this.box.hidden = false;
    if (field && !this.form.querySelector('[aria-invalid="true"]')) field.setAttribute("aria-invalid", "true");
    // The field to fix gets focus and comes into view, then the message does:
    // when both do not fit on screen, the message wins.
    const first = this.form.querySelector('[aria-invalid="true"]');
    if (first) {
      first.focus({ preventScroll: true });
      if (!onScreen(first)) first.scrollIntoView({ block: "nearest" });
    }
    if (!onScreen(this.box)) this.box.scrollIntoView({ block: "nearest" });
    return this.box.textContent;
  }
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function sentence(text) {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}
