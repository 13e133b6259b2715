/*
 * LLM Memory & Precision: two widgets that run without a kernel.
 *
 * - Float explorer: a value's bits in fp32, fp16, bf16, fp8 e4m3 and e5m2, fp4 e2m1
 *   and the e8m0 scale, decoded, with its rounding error and neighbours; bits flip on
 *   click (or Enter/Space); the same value through absmax int8 and the NF4 code book for
 *   a given scale; and a block of up to 32 values through an MX format (shared E8M0
 *   scale, each element's code).
 * - Memory calculator: weights, KV cache, activations, gradients and optimizer states
 *   for inference, full fine-tuning, LoRA and QLoRA, against common GPU sizes.
 *
 * Plain JavaScript, no build step, no network. The arithmetic mirrors the book's Python
 * package (llmbook.memory) and PyTorch / ml_dtypes / bitsandbytes; test vectors generated
 * from Python (vectors.json) are checked against it in CI (Node and headless Chromium).
 * The code is split by concern, as llmbook/memory is: floats.js (formats), memory/*.js
 * (one file per llmbook/memory module), ui.js, float-explorer.js and memory-calculator.js
 * (the pages). Plain scripts, not ES modules: a module script does not load from file://,
 * and the site must work from a folder on disk. The browser loads them in the order
 * _config.yml's html_js_files gives, this file last: it mounts the widgets. In Node this
 * file loads every part and exports the namespace (tests/js).
 */
(function (root) {
  "use strict";
  const PARTS = ["floats.js", "memory/shapes.js", "memory/weights.js", "memory/kv_cache.js", "memory/activations.js", "memory/optimizers.js", "memory/training.js", "memory/steps.js", "memory/sharding.js", "memory/gpus.js", "memory/serving.js", "memory/speed.js", "ui.js", "float-explorer.js", "memory-calculator.js"];
  if (typeof module === "object" && module.exports) {
    for (const part of PARTS) require("./" + part);
    module.exports = require("./namespace.js");
    return;
  }
  const W = root.LLMBookWidgets || {};
  const { floatExplorer, memoryCalculator } = W;
  if (!floatExplorer || !memoryCalculator) { // a part did not load: say so where a widget stands
    const say = () => document.querySelectorAll("[data-llmb-widget]").forEach((h) => {
      h.textContent = "The widgets' scripts did not all load; rebuild the site.";
    });
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", say); else say();
    return;
  }

  function mountAll(doc) {
    doc.querySelectorAll("[data-llmb-widget]").forEach((h) => {
      if (h.dataset.mounted) return;
      h.dataset.mounted = "1";
      h.classList.add("llmb-widget");
      if (h.dataset.llmbWidget === "float-explorer") floatExplorer(h);
      else if (h.dataset.llmbWidget === "memory-calculator") {
        if (root.LLMBookPresets && root.LLMBookGPUs) {
          memoryCalculator(h, root.LLMBookPresets, root.LLMBookGPUs, root.LLMBookModelPresets || {});
        }
        else h.textContent = "The calculator's presets (presets.js) did not load; rebuild the site.";
      }
    });
  }

  W.mountAll = mountAll;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => mountAll(document));
  else mountAll(document);
})(this);
