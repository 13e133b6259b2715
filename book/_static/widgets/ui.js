/*
 * Helpers both widgets' pages use: elements and number formatting.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";

  // ---------------------------------------------------------------- user interface
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const ch of children || []) e.appendChild(ch);
    return e;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (Number.isNaN(v)) return "NaN";
    if (!Number.isFinite(v)) return v > 0 ? "+inf" : "-inf";
    if (v === 0) return Object.is(v, -0) ? "-0" : "0";
    const a = Math.abs(v);
    return a >= 1e6 || a < 1e-4 ? v.toExponential(6) : String(Number(v.toPrecision(8)));
  }

  Object.assign(W, { el, fmt });
})(typeof module === "object" && module.exports
  ? require("./namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
