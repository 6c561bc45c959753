// A form's typed values carried to another page of this tab, once: the
// templates page hands its inputs to the schedule editor ("Schedule it
// instead…"), which takes them when it opens for the same template.
// sessionStorage keeps them in this tab only, and nothing goes in the URL
// (inputs may be long).
//
//   saveDraft("schedule", { templateId, inputs, title });
//   const draft = takeDraft("schedule", (d) => d.templateId === id);   // null if none

const PREFIX = "crewboard.draft.";

export function saveDraft(name, value) {
  try {
    sessionStorage.setItem(PREFIX + name, JSON.stringify(value));
  } catch {
    // Storage full or off: the other page opens with an empty form, as before.
  }
}

/** The draft saved under `name` if `fits(draft)`; it is removed either way. */
export function takeDraft(name, fits = () => true) {
  let draft = null;
  try {
    draft = JSON.parse(sessionStorage.getItem(PREFIX + name) || "null");
    sessionStorage.removeItem(PREFIX + name);
  } catch {
    return null;
  }
  return draft && typeof draft === "object" && fits(draft) ? draft : null;
}

/** Clear a control's error as soon as the user changes it: the message was
    about the value they are replacing. */
export function clearErrorsOnEdit(form, setFieldError) {
  form.addEventListener("input", (event) => {
    const control = event.target;
    if (control.getAttribute?.("aria-invalid") === "true") setFieldError(control, "");
  });
}
