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

  /** Same as llmbook.memory.OPTIMIZER_IMPLS: how torch's AdamW steps. */
  const OPTIMIZER_IMPLS = ["foreach", "for-loop", "fused"];

  /** llmbook.memory.optimizer_temporaries: what AdamW's step allocates for a moment. foreach:
   * a copy of every tensor; for-loop: the square root and the quotient of one tensor while the
   * loop still holds the previous tensor's denominator (largest 2 n_i + n_(i-1)); fused: none.
   * SGD with momentum and AdamW8bit: none. */
  function optimizerTemporaries(numels, optimizer, impl, width) {
    impl = impl || "foreach"; width = width || 4;
    if (OPTIMIZER_IMPLS.indexOf(impl) < 0) throw new Error("unknown optimizer_impl " + impl);
    if (optimizer !== "adamw" || impl === "fused" || !numels.length) return 0;
    if (impl === "foreach") return width * numels.reduce((s, n) => s + n, 0);
    let top = 0;
    numels.forEach((n, i) => { top = Math.max(top, 2 * n + (i ? numels[i - 1] : 0)); });
    return width * top;
  }

  Object.assign(W, { OPTIMIZERS, OPTIMIZER_IMPLS, optimizerStateBytes, optimizerTemporaries });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
