// A modal confirmation dialog (a native <dialog>), for actions that change or
// remove things. Keyboard: focus starts in the first field (or on the confirm
// button), Tab stays inside, Escape cancels.
//
//   const answer = await confirmDialog({
//     title: "Redo this job?",
//     message: "It runs again with your feedback.",
//     confirmLabel: "Redo",
//     fields: [{ name: "feedback", label: "Feedback", type: "textarea", required: true }],
//   });
//   if (answer) await api(..., { body: { feedback: answer.feedback } });
//
// Resolves to the fields' values ({} without fields), or null when cancelled.
// Field types: "textarea", "text", "select" (with `options`: [{value, label}])
// and "checkbox" (its value is a boolean).

import { el } from "/static/dom.js";

let counter = 0;

function fieldNode(field, id) {
  const hint = field.hint ? el("p", { class: "hint", id: `${id}-hint` }, field.hint) : null;
  const describedBy = hint ? `${id}-hint` : null;
  if (field.type === "checkbox") {
    return el("div", { class: "check" },
      el("input", { type: "checkbox", id, name: field.name, checked: Boolean(field.value), "aria-describedby": describedBy }),
      el("label", { for: id }, field.label),
      hint);
  }
  let control;
  if (field.type === "select") {
    control = el("select", { id, name: field.name, "aria-describedby": describedBy },
      (field.options || []).map((o) => el("option", { value: o.value, selected: o.value === field.value }, o.label)));
  } else if (field.type === "textarea") {
    control = el("textarea", { id, name: field.name, rows: 4, required: field.required, maxlength: field.maxLength,
      "aria-describedby": describedBy });
    control.value = field.value || "";
  } else {
    control = el("input", { id, name: field.name, required: field.required, maxlength: field.maxLength,
      "aria-describedby": describedBy, autocomplete: "off" });
    control.value = field.value || "";
  }
  return el("div", { class: "field" }, el("label", { for: id }, field.label), control, hint);
}

/** Ask before doing something; see the top of this file. */
export function confirmDialog({ title, message = "", confirmLabel = "OK", cancelLabel = "Cancel", danger = false, fields = [] }) {
  counter += 1;
  const prefix = `dialog-${counter}`;
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const confirmButton = el("button", { type: "submit", class: danger ? "danger" : null }, confirmLabel);
  const cancelButton = el("button", { type: "button", class: "secondary" }, cancelLabel);
  const form = el("form", { method: "dialog", novalidate: true },
    el("h2", { id: `${prefix}-title` }, title),
    message ? el("p", { id: `${prefix}-message` }, message) : null,
    fields.map((field, i) => fieldNode(field, `${prefix}-f${i}`)),
    error,
    el("div", { class: "dialog-actions" }, confirmButton, cancelButton));
  const dialog = el("dialog", {
    class: "dialog",
    "aria-labelledby": `${prefix}-title`,
    "aria-describedby": message ? `${prefix}-message` : null,
  }, form);
  document.body.append(dialog);

  return new Promise((resolve) => {
    let answer = null;
    const opener = document.activeElement;
    cancelButton.addEventListener("click", () => dialog.close());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = {};
      for (const field of fields) {
        const control = form.elements.namedItem(field.name);
        values[field.name] = field.type === "checkbox" ? control.checked : control.value;
        if (field.required && !String(values[field.name]).trim()) {
          error.textContent = `${field.label} is required.`;
          error.hidden = false;
          control.setAttribute("aria-invalid", "true");
          control.focus();
          return;
        }
      }
      answer = values;
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(answer);
    });
    dialog.showModal();
    const first = form.querySelector("textarea, input, select");
    (first || confirmButton).focus();
  });
}

/**
 * Run `work` with `button` disabled (so a double click does it once), then
 * give the button back the focus it lost by being disabled.
 * A click while it is busy does nothing.
 */
export async function whileBusy(button, work) {
  if (button.disabled || button.dataset.busy) return undefined;
  button.dataset.busy = "1";
  button.disabled = true;
  try {
    return await work();
  } finally {
    delete button.dataset.busy;
    button.disabled = false;
    // Unless the work moved focus on purpose (to a field in error, say).
    const lost = !document.activeElement || document.activeElement === document.body;
    if (button.isConnected && lost && !document.querySelector("dialog[open]")) button.focus();
  }
}
