/*
 * llmbook/memory/activations.py: inference and training activations, autocast's copies.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { blockLinears, headDim, kvHeads } = W;

  const COMPUTE_MODES = ["fp32", "bf16", "autocast"];
  const ATTENTIONS = ["sdpa", "eager"];
  function prefillActivationBytes(c, batch, seq, width) {
    return batch * seq * (5 * c.hidden_size + 3 * c.intermediate_size) * width;
  }

  /** llmbook.memory.training_activation_bytes: what autograd keeps for a Llama-style
   * model with SDPA attention (measured per token: 8h + 4I + 2 kv hd wide values and 2 + a
   * statistics per layer; the final norm and the loss's fp32 log-softmax, 4V bytes). */
  function trainingActivationBytes(c, batch, seq, checkpointing, compute, loraRank, attention, perLayerOnly) {
    compute = compute || "autocast";
    attention = attention || "sdpa";
    if (COMPUTE_MODES.indexOf(compute) < 0) throw new Error("unknown compute mode " + compute);
    if (ATTENTIONS.indexOf(attention) < 0) throw new Error("unknown attention " + attention);
    const h = c.hidden_size; const L = c.num_hidden_layers; const a = c.num_attention_heads;
    const eager = attention === "eager"; // keeps the s x s softmax, K and V repeated per head
    const wide = 8 * h + 4 * c.intermediate_size + 2 * (eager ? a : kvHeads(c)) * headDim(c);
    const stats = 2 + (eager ? 0 : a);
    const scores = eager ? a * seq * (compute === "fp32" ? 4 : 6) : 0;
    let perLayer; let outside; let layerInput;
    if (compute === "fp32") { perLayer = 4 * (wide + stats) + scores; outside = 12 * h; layerInput = 4 * h; }
    else {
      perLayer = 2 * wide + 4 * h + 4 * stats + scores + (compute === "autocast" ? 10 * h : 0);
      outside = compute === "autocast" ? 10 * h : 8 * h;
      layerInput = compute === "autocast" ? 4 * h : 2 * h;
    }
    outside += 4 * c.vocab_size;
    // PEFT's fp32 adapters, measured: fp32 copies of their inputs over a 16-bit base, none over fp32
    if (loraRank && compute === "fp32") { perLayer += 28 * loraRank - 8 * h; outside -= 12 * h; }
    else if (loraRank) perLayer += 16 * h + 2 * c.intermediate_size + 28 * loraRank;
    if (perLayerOnly) return batch * seq * perLayer;
    const perToken = checkpointing ? L * layerInput + perLayer : L * perLayer;
    return batch * seq * (perToken + outside);
  }

  /** llmbook.memory.autocast_cache_bytes: autocast's bf16 copies of every matmul weight. */
  function autocastCacheBytes(c) {
    const block = blockLinears(c).reduce((s, [a, b]) => s + a * b, 0);
    return 2 * (c.num_hidden_layers * block + c.vocab_size * c.hidden_size);
  }

  /** llmbook.memory.activations._compute_mode: how a training recipe computes. */
  function computeMode(recipe, width) {
    if (recipe === "full") return "autocast";
    if (recipe === "full-fp32" || ((recipe === "lora" || recipe === "qlora") && width === 4)) return "fp32";
    return "bf16";
  }

  Object.assign(W, { ATTENTIONS, COMPUTE_MODES, autocastCacheBytes, computeMode, prefillActivationBytes, trainingActivationBytes });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
