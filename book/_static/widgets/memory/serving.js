/*
 * llmbook/memory/serving.py: a serving engine's budget (vLLM's), the KV cache in blocks,
 * and the requests that fit. Its constants come from Python (gpuData.serving, presets.js).
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { kvLayers, kvWidths, prefillActivationBytes, weightBytes } = W;
  const MiB = Math.pow(2, 20); const GiB = Math.pow(2, 30);
  const cdiv = (a, b) => Math.floor((a + b - 1) / b);

  /** Same as llmbook.memory.serving._big: vLLM's larger defaults (70 GiB or more, not an A100). */
  function bigGpu(gpu) { return gpu.total_mib * MiB >= 70 * GiB && gpu.name.indexOf("A100") !== 0; }

  /** Same as llmbook.memory.cache_groups: [type, window, layers] per group of equal size. */
  function cacheGroups(c) {
    const counts = new Map();
    for (const [kind, window] of kvLayers(c)) {
      if (kind === "dummy") continue;
      if (kind !== "full_attention" && kind !== "sliding_attention") {
        throw new Error((c.model_type || "this model") + "'s " + kind + " layers: vLLM's budget for them " +
          "is not modelled (full and sliding-window attention are)");
      }
      const key = kind + "|" + (window == null ? "" : window);
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const size = Math.min(...counts.values());
    if ([...counts.values()].some((n) => n % size)) {
      throw new Error((c.model_type || "this model") + "'s layer mix does not split into equal groups " +
        "(vLLM pads them): not modelled");
    }
    const groups = [];
    for (const [key, n] of counts) {
      const [kind, window] = key.split("|");
      for (let i = 0; i < n / size; i++) groups.push([kind, window === "" ? null : Number(window), size]);
    }
    return groups;
  }

  /** Same as llmbook.memory.page_bytes: one layer's block of keys and values. */
  function pageBytes(c, block, kvBytes) {
    const [k, v] = kvWidths(c);
    return block * (k + v) * kvBytes;
  }

  /** Same as llmbook.memory.request_blocks: the blocks one request of `tokens` tokens holds at most. */
  function requestBlocks(c, tokens, block, stepTokens) {
    let total = 0;
    for (const [kind, window] of cacheGroups(c)) {
      total += kind === "sliding_attention" ? cdiv(Math.min(window - 1 + stepTokens, tokens), block) + 1
        : cdiv(tokens, block);
    }
    return total;
  }

  /** Same as llmbook.memory.serving_budget, for one entry of gpuData.gpus; `o` holds width (bytes
   * of the weights' dtype), quantization, double_quant, kv_bytes, utilization, block, tp. */
  function servingBudget(c, gpu, s, o) {
    const step = o.step_tokens || s.step_tokens.serve[bigGpu(gpu) ? 1 : 0];
    const total = gpu.total_mib * MiB - s.torch_total_gap_bytes;
    const requested = Math.floor(total * o.utilization);
    const tp = o.tp || 1;
    const weights = Math.floor(weightBytes(c, o.width, o.quantization, o.double_quant) / tp);
    const activations = Math.floor(prefillActivationBytes(c, 1, step, o.width === 4 ? 4 : 2) / tp);
    const groups = cacheGroups(c);
    const perGroup = groups[0][2];
    const page = Math.floor(pageBytes(c, o.block, o.kv_bytes) / tp);
    const kv = requested - weights - activations - s.non_torch_bytes;
    const blocks = Math.floor(Math.floor(Math.max(kv, 0) / page) / perGroup);
    return { gpu: gpu.name, total, requested, weights, activations, non_torch: s.non_torch_bytes,
      kv_cache: kv, blocks, block_tokens: o.block, groups: groups.length, block_bytes: page * perGroup,
      step_tokens: step, cache_tokens: Math.floor(blocks / groups.length) * o.block,
      max_seqs: s.max_seqs[bigGpu(gpu) ? 1 : 0] };
  }

  /** Same as llmbook.memory.requests_that_fit: requests of prompt + answer tokens at once. */
  function requestsThatFit(c, b, prompt, answer, sharedPrefix) {
    let shared = 0;
    if (sharedPrefix >= b.block_tokens) {
      if (cacheGroups(c).some(([kind]) => kind !== "full_attention")) {
        throw new Error("prefix sharing is modelled for full attention only");
      }
      shared = Math.floor(sharedPrefix / b.block_tokens) * cacheGroups(c).length;
    }
    const need = requestBlocks(c, prompt + answer, b.block_tokens, b.step_tokens);
    const each = need - shared;
    const fit = b.blocks >= need ? Math.floor(Math.max(b.blocks - shared, 0) / each) : 0;
    return { requests: Math.min(fit, b.max_seqs), blocks_each: each, shared_blocks: shared,
      limit: fit > b.max_seqs ? "max_num_seqs" : "KV cache",
      max_concurrency: b.blocks / need };
  }

  Object.assign(W, { bigGpu, cacheGroups, pageBytes, requestBlocks, requestsThatFit, servingBudget });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
