/*
 * llmbook/memory/kv_cache.py: the KV cache.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { headDim, kvHeads } = W;

  function kvCacheBytes(c, batch, tokens, width) {
    return 2 * c.num_hidden_layers * batch * tokens * kvHeads(c) * headDim(c) * width;
  }

  Object.assign(W, { kvCacheBytes });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
