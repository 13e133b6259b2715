/*
 * llmbook/memory/shapes.py: head size, key-value heads, a Llama block's linear layers.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";

  function headDim(c) { return c.head_dim || c.hidden_size / c.num_attention_heads; }
  function kvHeads(c) { return c.num_key_value_heads || c.num_attention_heads; }

  /** The linear layers of one Llama block: [in, out] per projection. */
  function blockLinears(c) {
    const h = c.hidden_size; const q = c.num_attention_heads * headDim(c); const kv = kvHeads(c) * headDim(c);
    const i = c.intermediate_size;
    return [[h, q], [h, kv], [h, kv], [q, h], [h, i], [h, i], [i, h]];
  }

  Object.assign(W, { blockLinears, headDim, kvHeads });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
