/*
 * llmbook/memory/optimizers.py: optimizer states.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";

  const OPTIMIZERS = ["adamw", "adamw8bit", "sgd"];

  /** llmbook.memory.optimizer_state_bytes: AdamW (two moments in the parameters' dtype,
   * a 4-byte step per tensor), bitsandbytes' AdamW8bit (1-byte moments and an fp32 absmax
   * per 256 elements for tensors of 4096 elements or more, fp32 moments below, two shared
   * 256-entry code tables) or SGD with momentum (one buffer in the parameters' dtype). */
  function optimizerStateBytes(numels, optimizer, width) {
    if (optimizer === "adamw") return numels.reduce((s, n) => s + 2 * width * n + 4, 0);
    if (optimizer === "sgd") return numels.reduce((s, n) => s + width * n, 0);
    if (optimizer !== "adamw8bit") throw new Error("unknown optimizer " + optimizer);
    let total = numels.some((n) => n >= 4096) ? 2 * 256 * 4 : 0; // code tables, when 8-bit
    for (const n of numels) total += n >= 4096 ? 2 * (n + 4 * Math.ceil(n / 256)) : 8 * n;
    return total;
  }

  Object.assign(W, { OPTIMIZERS, optimizerStateBytes });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
