// What a person can do to a job — unblock, redo with feedback, cancel,
// archive, restore from the archive, delete — as buttons that ask first, for the board's cards and the
// job page alike. Which of them a job allows is the server's call: each job
// it sends lists them in `job.actions`, and only those get a button.
//
//   const buttons = jobActionButtons(job, {
//     onDone: (action, job) => ...,   // job: the job as it is now, null once deleted
//     onError: (message) => ...,
//     refocus: (action) => ...,       // the button was re-drawn meanwhile: focus its successor
//   });
//
// A button is disabled while its request is in flight, so a double click
// sends one request.

import { api, ApiError } from "/static/api.js";
import { confirmDialog, whileBusy } from "/static/dialog.js";
import { el } from "/static/dom.js";

function quoted(job) {
  return `“${job.title || `job ${job.id}`}”`;
}

/** How each action asks and what it sends, in the order they are offered. */
export const ACTIONS = [
  {
    name: "unblock",
    label: "Unblock",
    ask: (job) => ({
      title: `Unblock ${quoted(job)}?`,
      message: "It goes back to the queue (or waits for its parents) with its retries reset.",
      confirmLabel: "Unblock",
    }),
    send: (job) => api(`/api/jobs/${job.id}/unblock`, { method: "POST" }),
  },
  {
    name: "redo",
    label: "Redo…",
    ask: (job) => ({
      title: `Redo ${quoted(job)}`,
      message: "It runs again with your feedback added to its prompt; jobs that depend on it run again after it.",
      confirmLabel: "Redo with feedback",
      fields: [{ name: "feedback", label: "Feedback", type: "textarea", required: true, maxLength: 20000,
        hint: "What should the agent do differently?" }],
    }),
    send: (job, answer) => api(`/api/jobs/${job.id}/redo`, { method: "POST", body: { feedback: answer.feedback } }),
  },
  {
    name: "cancel",
    label: "Cancel",
    ask: (job) => ({
      title: `Cancel ${quoted(job)}?`,
      message: job.status === "running"
        ? "Its runner is stopped and the job is blocked; you can unblock or redo it later."
        : "It is taken off the queue and blocked; you can unblock it later.",
      confirmLabel: "Cancel the job",
      cancelLabel: "Keep it",
      danger: true,
    }),
    send: (job) => api(`/api/jobs/${job.id}/cancel`, { method: "POST" }),
  },
  {
    name: "archive",
    label: "Archive",
    ask: (job) => ({
      title: `Archive ${quoted(job)}?`,
      message: "It leaves the board; “Show archived” finds it again.",
      confirmLabel: "Archive",
    }),
    send: (job) => api(`/api/jobs/${job.id}/archive`, { method: "POST" }),
  },
  {
    name: "unarchive",
    label: "Restore",
    ask: (job) => ({
      title: `Restore ${quoted(job)}?`,
      message: "It comes back to the board in the column it was archived from; a job that was queued is queued again.",
      confirmLabel: "Restore",
    }),
    send: (job) => api(`/api/jobs/${job.id}/unarchive`, { method: "POST" }),
  },
  {
    name: "delete",
    label: "Delete…",
    ask: (job) => ({
      title: `Delete ${quoted(job)}?`,
      message: "The job goes for good, with its runs, logs, artifacts and comments.",
      confirmLabel: "Delete",
      danger: true,
      fields: [{ name: "cascade", label: "Also delete the jobs that depend on it", type: "checkbox",
        hint: "Without this, a job others depend on is not deleted." }],
    }),
    send: async (job, answer) => {
      try {
        await api(`/api/jobs/${job.id}${answer.cascade ? "?cascade=1" : ""}`, { method: "DELETE" });
      } catch (error) {
        // The server words it for API clients; here the choice is the checkbox.
        const dependent = error instanceof ApiError && error.status === 409 && error.details?.dependent;
        if (!dependent) throw error;
        throw new ApiError(`job ${dependent} depends on it. Tick “Also delete the jobs that depend on it” `
          + "to delete them too, or archive this job instead", error.status, error.code, error.details);
      }
      return null;
    },
  },
];

/** Ask, then do `action` to `job`; resolves to { job } when done, null when not. */
export async function runJobAction(action, job, { onError = () => {} } = {}) {
  const answer = await confirmDialog(action.ask(job));
  if (!answer) return null;
  try {
    return { job: await action.send(job, answer) };
  } catch (error) {
    onError(`Cannot ${action.name} ${quoted(job)}: ${error.message}`);
    return null;
  }
}

/** Buttons for the actions `job.actions` allows (see the top of this file). */
export function jobActionButtons(job, { onDone = () => {}, onError = () => {}, refocus = () => {}, small = true } = {}) {
  const allowed = new Set(job.actions || []);
  return ACTIONS.filter((action) => allowed.has(action.name)).map((action) => {
    const danger = action.name === "delete" || action.name === "cancel";
    const button = el("button", {
      type: "button",
      class: [danger ? "danger" : "secondary", small ? "small" : null].filter(Boolean).join(" "),
      dataset: { action: action.name },
      "aria-label": `${action.label.replace("…", "")} ${quoted(job)}`,
    }, action.label);
    button.addEventListener("click", async () => {
      const done = await whileBusy(button, () => runJobAction(action, job, { onError }));
      // Live updates may have re-drawn the job meanwhile.
      if (!button.isConnected && (!document.activeElement || document.activeElement === document.body)) {
        refocus(action.name);
      }
      if (done) onDone(action.name, done.job);
    });
    return button;
  });
}
