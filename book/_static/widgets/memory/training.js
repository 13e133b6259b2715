/*
 * llmbook/memory/training.py: a recipe's parts (breakdown).
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { autocastCacheBytes, blockLinears, computeMode, kvCacheBytes, optimizerStateBytes, parameters, prefillActivationBytes, trainingActivationBytes, weightBytes } = W;

  const RECIPES = ["inference", "full", "full-fp32", "full-bf16", "full-master", "lora", "qlora"];
  function loraParameters(c, rank) {
    return c.num_hidden_layers * blockLinears(c).reduce((s, [a, b]) => s + rank * (a + b), 0);
  }

  /** llmbook.memory.trainable_numels: element counts of the tensors a recipe trains. */
  function trainableNumels(c, recipe, rank) {
    const L = c.num_hidden_layers; const out = [];
    if (recipe === "lora" || recipe === "qlora") {
      for (let l = 0; l < L; l++) for (const [a, b] of blockLinears(c)) out.push(rank * a, b * rank);
      return out;
    }
    const h = c.hidden_size; const emb = c.vocab_size * h;
    out.push(emb);
    for (let l = 0; l < L; l++) {
      for (const [a, b] of blockLinears(c)) out.push(a * b);
      out.push(h, h); // the two RMSNorms
    }
    out.push(h); // the final norm
    if (!c.tie_word_embeddings) out.push(emb);
    return out;
  }

  const WIDTH = { float32: 4, bfloat16: 2, float16: 2 };

  /** Same as llmbook.memory.breakdown: bytes of each part of a job. */
  function breakdown(c, o) {
    const opts = Object.assign({ recipe: "inference", dtype: "bfloat16", quantization: null, double_quant: false,
      batch: 1, context: 2048, checkpointing: false, lora_rank: 16, optimizer: "adamw",
      attention: "sdpa", optimizer_impl: "foreach", kv_dtype: null, kv_quant: null, kv_keep: "all" }, o || {});
    if (W.OPTIMIZER_IMPLS.indexOf(opts.optimizer_impl) < 0) throw new Error("unknown optimizer_impl " + opts.optimizer_impl);
    const width = WIDTH[opts.dtype];
    if (!width) throw new Error("unknown dtype " + opts.dtype);
    if (RECIPES.indexOf(opts.recipe) < 0) throw new Error("unknown recipe " + opts.recipe);
    if (opts.recipe !== "inference" && c.model_type && c.model_type !== "llama") {
      throw new Error("training activations are measured for Llama-shaped models here, not " + c.model_type);
    }
    if (opts.recipe === "inference") {
      return { weights: weightBytes(c, width, opts.quantization, opts.double_quant),
        kv_cache: kvCacheBytes(c, opts.batch, opts.context, opts.kv_dtype ? WIDTH[opts.kv_dtype] : width,
          opts.kv_keep, opts.kv_quant, undefined, undefined, width === 4 ? "float32" : "bfloat16"),
        activations: prefillActivationBytes(c, opts.batch, opts.kv_keep === "window" ? 1 : opts.context, width) };
    }
    if (opts.recipe.startsWith("full")) {
      const n = parameters(c);
      const act = trainingActivationBytes(c, opts.batch, opts.context, opts.checkpointing,
        { full: "autocast", "full-fp32": "fp32" }[opts.recipe] || "bf16", null, opts.attention);
      const states = optimizerStateBytes(trainableNumels(c, opts.recipe), opts.optimizer,
        opts.recipe === "full-bf16" ? 2 : 4);
      if (opts.recipe === "full") {
        return { weights: 4 * n, gradients: 4 * n, optimizer: states, autocast_cache: autocastCacheBytes(c),
          activations: act };
      }
      if (opts.recipe === "full-fp32" || opts.recipe === "full-bf16") { // weights, gradients, states alike
        const w = opts.recipe === "full-bf16" ? 2 : 4;
        return { weights: w * n, gradients: w * n, optimizer: states, activations: act };
      }
      return { weights: 2 * n, gradients: 2 * n, master_weights: 4 * n, optimizer: states, activations: act };
    }
    const act = trainingActivationBytes(c, opts.batch, opts.context, opts.checkpointing,
      width === 4 ? "fp32" : "bf16", opts.lora_rank, opts.attention);
    const base = weightBytes(c, width, opts.recipe === "qlora" ? "nf4" : null, opts.double_quant);
    const p = loraParameters(c, opts.lora_rank);
    const states = optimizerStateBytes(trainableNumels(c, opts.recipe, opts.lora_rank), opts.optimizer, 4);
    return { weights: base, adapter: 4 * p, gradients: 4 * p, optimizer: states, activations: act };
  }


  Object.assign(W, { RECIPES, WIDTH, breakdown, loraParameters, trainableNumels });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
