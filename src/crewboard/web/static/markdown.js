// Markdown while it streams, and code blocks people can read and copy.
//
//   import { renderMarkdownInto, decorateCode } from "/static/markdown.js";
//   renderMarkdownInto(node, textSoFar);   // a streaming answer, re-rendered as it grows
//   decorateCode(node);                    // highlight + copy buttons on any rendered answer
//
// The final answer is still the server's sanitised HTML (web/render.py); this
// renders only the text that has streamed so far, so raw Markdown never
// shows. Two layers, as on the server: marked renders with raw HTML escaped
// (a <script> in the text stays text) and images as links; DOMPurify then
// keeps only the server's allow-list of tags, attributes and URL schemes.
// Both libraries, and highlight.js, are vendored under /static/vendor/ (see
// its README): nothing is fetched from elsewhere, and the page's CSP stays
// `script-src 'self'; style-src 'self'` (highlight.js styles by class only).

import DOMPurify from "/static/vendor/dompurify/purify.es.mjs";
import hljs from "/static/vendor/highlight/core.min.js";
import bash from "/static/vendor/highlight/languages/bash.min.js";
import css from "/static/vendor/highlight/languages/css.min.js";
import diff from "/static/vendor/highlight/languages/diff.min.js";
import go from "/static/vendor/highlight/languages/go.min.js";
import javascript from "/static/vendor/highlight/languages/javascript.min.js";
import json from "/static/vendor/highlight/languages/json.min.js";
import plaintext from "/static/vendor/highlight/languages/plaintext.min.js";
import python from "/static/vendor/highlight/languages/python.min.js";
import rust from "/static/vendor/highlight/languages/rust.min.js";
import shell from "/static/vendor/highlight/languages/shell.min.js";
import sql from "/static/vendor/highlight/languages/sql.min.js";
import typescript from "/static/vendor/highlight/languages/typescript.min.js";
import xml from "/static/vendor/highlight/languages/xml.min.js";
import yaml from "/static/vendor/highlight/languages/yaml.min.js";
import { Marked } from "/static/vendor/marked/marked.esm.js";
import { copyText, el } from "/static/dom.js";

for (const [name, language] of Object.entries({
  bash, css, diff, go, javascript, json, plaintext, python, rust, shell, sql, typescript, xml, yaml,
})) {
  hljs.registerLanguage(name, language);
}

// Past this many characters a streaming answer shows as plain text until it
// ends: re-rendering all of it on every step would cost more than it shows.
export const LIVE_RENDER_MAX_CHARS = 200_000;
// Code blocks longer than this are not highlighted (the work grows with them).
const HIGHLIGHT_MAX_CHARS = 50_000;

// The server's allow-list (web/render.py TAGS, ATTRIBUTES, URL_SCHEMES).
const TAGS = [
  "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
  "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
];
const ATTRIBUTES = ["href", "title", "class", "start", "align"];
const URLS = /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") node.setAttribute("rel", "noopener nofollow");
  // Only code blocks carry a class (their language), as on the server.
  if (node.tagName !== "CODE") node.removeAttribute("class");
  if (node.tagName !== "TD" && node.tagName !== "TH") node.removeAttribute("align");
});

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const marked = new Marked({
  gfm: true,
  renderer: {
    // Raw HTML in an answer is text, as the server renders it.
    html({ text }) {
      return escapeHtml(text);
    },
    // An image the browser fetched by itself could carry the conversation away.
    image({ href, text }) {
      return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
    },
  },
});

/** Markdown `text` as sanitised HTML. */
export function markdownToHtml(text) {
  const html = marked.parse(String(text ?? ""), { async: false });
  return DOMPurify.sanitize(html, {
    ALLOWED_TAGS: TAGS,
    ALLOWED_ATTR: ATTRIBUTES,
    ALLOWED_URI_REGEXP: URLS,
  });
}

/** Render streamed Markdown `text` into `node` (plain text when it is very long). */
export function renderMarkdownInto(node, text) {
  if (text.length > LIVE_RENDER_MAX_CHARS) {
    node.classList.add("plain");
    node.textContent = text;
    return;
  }
  node.classList.remove("plain");
  node.innerHTML = markdownToHtml(text);
  decorateCode(node);
}

/** The language a code element names (class "language-x"), if highlight.js knows it. */
function languageOf(code) {
  const match = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className);
  return match && hljs.getLanguage(match[1]) ? match[1] : match ? null : "";
}

function highlight(code) {
  const text = code.textContent;
  if (!text || text.length > HIGHLIGHT_MAX_CHARS) return;
  const language = languageOf(code);
  if (language === null) return; // named, but not one we carry: leave it plain
  const result = language
    ? hljs.highlight(text, { language, ignoreIllegals: true })
    : hljs.highlightAuto(text);
  // highlight.js escapes the code's text; its markup is spans with classes.
  code.innerHTML = result.value;
  code.classList.add("hljs");
}

/** Highlight every code block in `root` and give each a Copy button. */
export function decorateCode(root) {
  for (const pre of root.querySelectorAll("pre")) {
    if (pre.parentElement?.classList.contains("code-block")) continue;
    const code = pre.querySelector("code");
    if (code) highlight(code);
    const status = el("span", { class: "copy-status", "aria-live": "polite" });
    const button = el("button", {
      type: "button",
      class: "secondary small copy-code",
      "aria-label": "Copy the code",
      onclick: async () => {
        const copied = await copyText((code || pre).textContent);
        status.textContent = copied ? "" : "Copying is not allowed here: select the code and press Ctrl+C";
        button.textContent = copied ? "Copied" : "Copy";
        setTimeout(() => {
          button.textContent = "Copy";
          status.textContent = "";
        }, 2000);
      },
    }, "Copy");
    const block = el("div", { class: "code-block" }, el("div", { class: "code-tools" }, status, button));
    pre.replaceWith(block);
    block.append(pre);
  }
}
