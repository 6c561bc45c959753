// Small DOM and formatting helpers shared by the pages.
//
// Everything that shows data builds nodes with el() and textContent, never
// innerHTML: agent output and user input are text. The one exception is the
// server's sanitised `html` of a final answer, inserted by render.js.

/**
 * el("button", { class: "primary", type: "button", onclick: send }, "Send")
 * Attributes: `class`, `on<event>` handlers, booleans (true sets, false
 * omits), `dataset` (an object); children: nodes, strings (as text), or
 * null/false (skipped), also in nested arrays.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** Replace the children of `node`. */
export function replaceChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** Show `message` in an error box (a role="alert" element), or hide it when empty. */
export function showError(box, message) {
  box.textContent = message || "";
  box.hidden = !message;
}

/** A timestamp as local date and time, e.g. "28 Nov 2026, 21:00"; today's as "21:00:05". */
export function formatTime(ts) {
  if (!ts) return "never";
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return String(ts);
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** A <time> element for a timestamp, with the exact UTC time as its tooltip. */
export function timeEl(ts) {
  return el("time", { datetime: ts || null, title: ts || null }, formatTime(ts));
}

/** Copy text to the clipboard; resolves to whether it worked. */
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (or no permission): select the text so Ctrl+C works.
    fallbackInput?.select();
    return false;
  }
}
