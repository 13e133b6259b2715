/*
 * llmbook/memory/gpus.py: which GPUs a job fits.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";

  function fitsOn(totalBytes, gpuData) {
    return gpuData.gpus.filter((g) => totalBytes <= g.usable_bytes).map((g) => g.name);
  }

  Object.assign(W, { fitsOn });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
