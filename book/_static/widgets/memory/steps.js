/*
 * llmbook/memory/steps.py: a step's moments and its peak.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { WIDTH, blockLinears, breakdown, computeMode, kvCacheBytes, optimizerTemporaries, trainableNumels,
    trainingActivationBytes } = W;

  const LOSS_BACKWARD_BYTES = 8;
  /** Same as llmbook.memory.LAYER_WORKSPACE: the working layer's transients, as shares of its activations. */
  const LAYER_WORKSPACE = {
    full: { backward: 0.5, recompute: 0.4, forward: 0.4 },
    lora: { backward: 0.2, recompute: 0.5, forward: 0.35 },
    "lora-fp32": { backward: 0.35, recompute: 0.25, forward: 0.2 },
    qlora: { backward: 0.1, recompute: 0.15, forward: 0.08 },
    "qlora-fp32": { backward: 0.2, recompute: 0.15, forward: 0.05 },
  };

  /** Same as llmbook.memory.step_phases: the parts alive at each moment of a job. */
  function stepPhases(c, o) {
    const opts = Object.assign({ recipe: "inference", dtype: "bfloat16", batch: 1, context: 2048,
      checkpointing: false, lora_rank: 16, optimizer: "adamw", attention: "sdpa", optimizer_impl: "foreach" },
    o || {});
    const parts = breakdown(c, opts);
    if (opts.recipe === "inference") return opts.kv_keep === "window" ? { decoding: parts } : { "prompt pass": parts };
    const recipe = opts.recipe; const width = WIDTH[opts.dtype];
    const compute = opts._compute || computeMode(recipe, width);
    if (opts._compute) { // FSDP2's MixedPrecisionPolicy: the whole model computes in bf16
      parts.activations = trainingActivationBytes(c, opts.batch, opts.context, opts.checkpointing,
        opts._compute, null, opts.attention);
    }
    const lora = recipe === "lora" || recipe === "qlora"; const full = recipe.startsWith("full");
    const V = c.vocab_size; const h = c.hidden_size; const L = c.num_hidden_layers;
    const tokensV = opts.batch * opts.context * V;
    const logits = tokensV * (compute === "fp32" ? 4 : 2);
    const layer = trainingActivationBytes(c, opts.batch, opts.context, false, compute,
      lora ? opts.lora_rank : null, opts.attention, true);
    const kept = {};
    for (const [k, v] of Object.entries(parts)) {
      if (k !== "gradients" && k !== "activations" && k !== "autocast_cache") kept[k] = v;
    }
    const saved = parts.activations - (opts.checkpointing ? layer : 0);
    const block = blockLinears(c);
    let late = lora ? block.reduce((s, [a, b]) => s + opts.lora_rank * (a + b), 0)
      : block.reduce((s, [a, b]) => s + a * b, 0) + 2 * h; // a bias-free Llama layer: projections, norms
    if (full && !c.tie_word_embeddings) late += V * h;
    const gradWidth = recipe === "full-bf16" || recipe === "full-master" ? 2 : 4;
    let cast = {};
    if (recipe === "full" && compute === "autocast") {
      const head = 2 * V * h; const oneLayer = Math.floor((parts.autocast_cache - head) / L);
      cast = { forward: parts.autocast_cache,
        "loss backward": opts.checkpointing ? head : parts.autocast_cache,
        "backward start": opts.checkpointing ? oneLayer : parts.autocast_cache - head,
        "layer forward": parts.autocast_cache - head,
        "backward end": oneLayer };
    }
    const tiedExtra = full && c.tie_word_embeddings ? (recipe === "full" ? 1 : 2) * gradWidth * V * h : 0;
    const dequantized = recipe === "qlora" ? width * Math.max(...block.map(([a, b]) => a * b)) : 0;
    const temporaries = recipe === "full-master" ? 0 : optimizerTemporaries(trainableNumels(c, recipe,
      opts.lora_rank), opts.optimizer, opts.optimizer_impl, recipe === "full-bf16" ? 2 : 4);
    const share = LAYER_WORKSPACE[lora ? recipe + (compute === "fp32" ? "-fp32" : "") : "full"];
    const workspace = Math.floor(Math.max(share.backward, opts.checkpointing ? share.recompute : 0) * layer);
    const forwardWorkspace = Math.floor(share.forward * layer);
    // the KV cache transformers builds in the forward pass, kept by the loop's `out` (not under checkpointing)
    const cache = opts.use_cache !== false && !opts.checkpointing
      ? kvCacheBytes(c, opts.batch, opts.context, compute === "fp32" ? 4 : 2) : 0;
    function moment(name, more) {
      const out = Object.assign({}, kept);
      const extra = Object.assign({ autocast_cache: cast[name] || 0, logits: logits }, more);
      for (const [k, v] of Object.entries(extra)) if (v) out[k] = v;
      return out;
    }
    return {
      "layer forward": moment("layer forward", { activations: saved - 4 * tokensV, forward_workspace: forwardWorkspace,
        dequantized_weight: dequantized, logits: 0, previous_logits: logits, previous_cache: cache }),
      forward: moment("forward", { activations: saved, logits_fp32: compute === "fp32" ? 0 : 4 * tokensV,
        previous_logits: logits, previous_cache: cache }),
      "loss backward": moment("loss backward", { activations: saved, loss_backward: LOSS_BACKWARD_BYTES * tokensV }),
      "backward start": moment("backward start", { gradients: full ? gradWidth * V * h : 0,
        activations: parts.activations - 4 * tokensV, backward_workspace: workspace, dequantized_weight: dequantized }),
      "backward end": moment("backward end", { gradients: parts.gradients - gradWidth * late, activations: layer,
        output_cache: Math.floor(cache * (L - 1) / L), backward_workspace: workspace, dequantized_weight: dequantized }),
      "embedding backward": moment("embedding backward", { gradients: parts.gradients, embedding_gradient: tiedExtra,
        output_cache: cache }),
      "optimizer step": moment("optimizer step", { gradients: parts.gradients, optimizer_temporaries: temporaries,
        output_cache: cache }),
    };
  }

  /** Same as llmbook.memory.peak: [moment, parts] of the moment that holds the most. */
  function peak(c, o) {
    return largest(stepPhases(c, o));
  }

  /** The moment of a phases object that holds the most: [moment, parts]. */
  function largest(phases) {
    let best = null; let bestTotal = -1;
    for (const [name, parts] of Object.entries(phases)) {
      const total = Object.values(parts).reduce((s, v) => s + v, 0);
      if (total > bestTotal) { best = name; bestTotal = total; }
    }
    return [best, phases[best]];
  }

  // The GPUs a job fits on: usable bytes (nvidia-smi's total less the driver and CUDA
  // context reserve and the allocator's slack) come precomputed from llmbook.memory.

  Object.assign(W, { LAYER_WORKSPACE, LOSS_BACKWARD_BYTES, largest, peak, stepPhases });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
