// How the board's pages name and show things: job statuses, run outcomes,
// actors, durations and times (including the RFC 3339 time with offset that
// `?scheduledAt=` wants from a datetime-local input).

import { el } from "/static/dom.js";

/** Job statuses in board order. */
export const STATUSES = ["waiting", "ready", "running", "blocked", "done", "archived"];

export const STATUS_LABELS = {
  waiting: "Waiting",
  ready: "Ready",
  running: "Running",
  blocked: "Blocked",
  done: "Done",
  archived: "Archived",
};

/** What each status means, for tooltips and empty columns. */
export const STATUS_HINTS = {
  waiting: "waiting for its parents or its scheduled time",
  ready: "queued for the dispatcher",
  running: "an agent is working on it",
  blocked: "needs a person: unblock it or redo it with feedback",
  done: "finished with a result",
  archived: "put away; off the board",
};

export const OUTCOME_LABELS = {
  running: "running",
  succeeded: "succeeded",
  blocked: "blocked",
  cancelled: "cancelled",
  failed: "failed",
  crashed: "crashed",
  timed_out: "timed out",
  interrupted: "interrupted",
};

/** A status badge: <span class="status status-done">Done</span>. */
export function statusBadge(status) {
  return el("span", { class: `status status-${status}`, title: STATUS_HINTS[status] || null },
    STATUS_LABELS[status] || status);
}

/** A run outcome badge. */
export function outcomeBadge(outcome) {
  return el("span", { class: `outcome outcome-${outcome}` }, OUTCOME_LABELS[outcome] || outcome);
}

/** "user:alice@example.com" → "alice@example.com"; "supervisor:ab12" → "supervisor ab12". */
export function actorLabel(actor) {
  const text = String(actor || "");
  if (text.startsWith("user:")) return text.slice(5);
  if (text.startsWith("supervisor:")) return `supervisor ${text.slice(11)}`;
  if (text.startsWith("scheduler")) return "scheduler";
  return text || "system";
}

/** Seconds as "850 ms", "12.4 s", "3 min 5 s", "2 h 10 min". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "–";
  const s = Number(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(s / 60);
  const rest = Math.round(s % 60);
  if (minutes < 60) return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
  return minutes % 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${Math.floor(minutes / 60)} h`;
}

/** The browser's IANA time zone, e.g. "Europe/Paris" (UTC when it cannot tell). */
export function browserTimeZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** Every IANA zone the browser knows, for a datalist (empty if it cannot list them). */
export function knownTimeZones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return [];
  }
}

/**
 * An instant as wall time in `timeZone`, e.g. "Mon, 30 Nov 2026, 08:30".
 * Falls back to `fallback` (or the ISO text) for a zone the browser does not know.
 */
export function formatInZone(iso, timeZone, fallback = null) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(fallback ?? iso);
  try {
    return new Intl.DateTimeFormat(undefined, {
      weekday: "short", year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZone,
    }).format(date);
  } catch {
    return String(fallback ?? iso);
  }
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/**
 * The value of an <input type="datetime-local"> ("2026-11-28T21:00", the
 * browser's local time) as RFC 3339 with the local offset
 * ("2026-11-28T21:00:00+01:00"), or null when it is empty or not a time.
 */
export function localInputToIso(value) {
  if (!value) return null;
  const date = new Date(value); // a date-time without offset is read as local time
  if (Number.isNaN(date.getTime())) return null;
  const offset = -date.getTimezoneOffset(); // minutes east of UTC
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    + `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** A Date as the value of an <input type="datetime-local"> (local time, to the minute). */
export function dateToLocalInput(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** "1 job", "3 jobs". */
export function plural(count, word, many = `${word}s`) {
  return `${count} ${count === 1 ? word : many}`;
}
