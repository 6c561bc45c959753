// Form fields generated from a template's input schema (the JSON Schema that
// /api/templates gives), and errors shown next to the fields they are about.
//
//   const inputs = new InputsForm(container, template.inputs, { idPrefix: "in", values });
//   const { values, problems } = inputs.read();   // problems: {name: message}
//   inputs.showErrors({ "inputs.topic": "is required" });
//
// Types: string (a text box; a text area when long values are allowed),
// integer and number (number boxes with their bounds), boolean (a checkbox),
// and any `enum` as a select. Required fields say so; defaults are filled in.

import { el, replaceChildren } from "/static/dom.js";

// Strings that may be longer than this get a text area.
const LONG_TEXT = 500;

/** Show (or clear, with an empty message) the error of one form control. */
export function setFieldError(control, message) {
  const id = `${control.id}-error`;
  let box = document.getElementById(id);
  if (!message) {
    box?.remove();
    control.removeAttribute("aria-invalid");
    const described = (control.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && x !== id);
    if (described.length) control.setAttribute("aria-describedby", described.join(" "));
    else control.removeAttribute("aria-describedby");
    return;
  }
  if (!box) {
    box = el("p", { class: "field-error", id });
    const anchor = control.closest(".field") || control.parentElement;
    anchor.append(box);
  }
  box.textContent = message;
  control.setAttribute("aria-invalid", "true");
  const described = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
  if (!described.includes(id)) control.setAttribute("aria-describedby", [...described, id].join(" "));
}

/** "the_topic" → "The topic". */
export function humanize(name) {
  const words = String(name).replace(/([a-z])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1).toLowerCase();
}

export class InputsForm {
  constructor(container, schema, { idPrefix = "input", values = {} } = {}) {
    this.container = container;
    this.schema = schema || {};
    this.idPrefix = idPrefix;
    this.properties = this.schema.properties || {};
    this.required = new Set(this.schema.required || []);
    this.controls = new Map();
    this.render(values);
  }

  get names() {
    return Object.keys(this.properties);
  }

  render(values) {
    const fields = this.names.map((name) => this.field(name, this.properties[name] || {}, values));
    replaceChildren(this.container, fields.length ? fields : el("p", { class: "hint" }, "This template takes no inputs."));
  }

  field(name, spec, values) {
    const id = `${this.idPrefix}-${name}`;
    const required = this.required.has(name);
    const has = Object.prototype.hasOwnProperty.call(values, name);
    const value = has ? values[name] : spec.default;
    const hintParts = [];
    if (spec.description) hintParts.push(/[.!?]$/.test(spec.description) ? spec.description : `${spec.description}.`);
    const bounds = [];
    if (spec.minimum !== undefined) bounds.push(`at least ${spec.minimum}`);
    if (spec.maximum !== undefined) bounds.push(`at most ${spec.maximum}`);
    if (bounds.length) hintParts.push(`${humanize(bounds.join(", "))}.`);
    if (spec.default !== undefined && !Array.isArray(spec.enum) && spec.type !== "boolean") {
      hintParts.push(`Default: ${spec.default}.`);
    }
    const hint = hintParts.length ? el("p", { class: "hint", id: `${id}-hint` }, hintParts.join(" ")) : null;
    const common = { id, name, "aria-describedby": hint ? `${id}-hint` : null, dataset: { input: name } };
    const label = el("label", { for: id }, humanize(name),
      required ? el("span", { class: "required" }, " (required)") : null);

    let control;
    if (spec.type === "boolean") {
      control = el("input", { ...common, type: "checkbox", checked: Boolean(value) });
      this.controls.set(name, { control, spec });
      return el("div", { class: "field check" }, control, label, hint);
    }
    if (Array.isArray(spec.enum)) {
      control = el("select", { ...common, required },
        required && value === undefined ? el("option", { value: "" }, "Choose…") : null,
        !required && spec.default === undefined ? el("option", { value: "" }, "(none)") : null,
        spec.enum.map((option) => el("option", { value: String(option), selected: value !== undefined && String(option) === String(value) }, String(option))));
    } else if (spec.type === "integer" || spec.type === "number") {
      control = el("input", {
        ...common, type: "number", inputmode: spec.type === "integer" ? "numeric" : "decimal",
        step: spec.type === "integer" ? "1" : "any", min: spec.minimum, max: spec.maximum, required,
      });
      if (value !== undefined && value !== null) control.value = String(value);
    } else {
      const long = spec.maxLength === undefined || spec.maxLength > LONG_TEXT;
      control = long
        ? el("textarea", { ...common, rows: 3, maxlength: spec.maxLength, required })
        : el("input", { ...common, type: "text", maxlength: spec.maxLength, required, autocomplete: "off" });
      if (value !== undefined && value !== null) control.value = String(value);
    }
    this.controls.set(name, { control, spec });
    return el("div", { class: "field" }, label, control, hint);
  }

  /** The values to send, leaving out empty fields; `problems` are what only the browser can see. */
  read() {
    const values = {};
    const problems = {};
    for (const [name, { control, spec }] of this.controls) {
      if (spec.type === "boolean") {
        values[name] = control.checked;
        continue;
      }
      const raw = control.value;
      if (raw === "" || (spec.type !== "string" && !raw.trim())) {
        // A number box holding something that is not a number also reads "";
        // anything else (a required field left empty, say) the server judges.
        if (control.validity?.badInput) problems[name] = "must be a number";
        continue;
      }
      if (Array.isArray(spec.enum)) {
        const match = spec.enum.find((option) => String(option) === raw);
        values[name] = match === undefined ? raw : match;
      } else if (spec.type === "integer" || spec.type === "number") {
        values[name] = Number(raw);
      } else {
        values[name] = raw;
      }
    }
    return { values, problems };
  }

  /** Show `fields` (as the server names them: "inputs.<name>", or bare names) next to their inputs;
   * returns the messages that belong to no input here. */
  showErrors(fields = {}) {
    this.clearErrors();
    const rest = {};
    for (const [key, message] of Object.entries(fields)) {
      const name = key.startsWith("inputs.") ? key.slice(7) : key;
      const entry = this.controls.get(name);
      if (entry) setFieldError(entry.control, message);
      else rest[key] = message;
    }
    return rest;
  }

  clearErrors() {
    for (const { control } of this.controls.values()) setFieldError(control, "");
  }

  /** The first control showing an error, to move focus to. */
  firstInvalid() {
    for (const { control } of this.controls.values()) {
      if (control.getAttribute("aria-invalid") === "true") return control;
    }
    return null;
  }
}
