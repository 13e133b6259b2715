/*
 * llmbook/memory/sharding.py: DDP, ZeRO and FSDP2 over several GPUs, CPU offload.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { blockLinears, breakdown, parameters, stepPhases } = W;

  const SHARDINGS = ["ddp", "zero1", "zero2", "zero3"];
  const GATHERED_LAYERS = 2;
  const SHARDED_PARTS = { ddp: [], zero1: ["optimizer", "master_weights", "optimizer_temporaries"] };
  SHARDED_PARTS.zero2 = SHARDED_PARTS.zero1.concat(["gradients", "embedding_gradient", "weights", "adapter"]);
  SHARDED_PARTS.zero3 = SHARDED_PARTS.zero2;

  /** Same as llmbook.memory.sharded_phases: each moment's parts on one of o.gpus GPUs. */
  function shardedPhases(c, o) {
    const opts = Object.assign({ recipe: "full", gpus: 1, sharding: "ddp", offload: false, dtype: "bfloat16",
      lora_rank: 16 }, o || {});
    const { gpus, sharding, offload, recipe } = opts;
    if (SHARDINGS.indexOf(sharding) < 0) throw new Error("unknown sharding " + sharding);
    if (recipe === "inference") throw new Error("sharding applies to training recipes");
    if (!(gpus >= 1)) throw new Error("gpus must be at least 1");
    const fsdp = sharding === "zero2" || sharding === "zero3";
    if (offload && !fsdp) throw new Error("offload applies to zero2 and zero3");
    const phases = stepPhases(c, opts);
    const grads = breakdown(c, opts).gradients;
    let gathered = 0; const reducing = {};
    if (fsdp) {
      const n = parameters(c);
      const whole = recipe === "lora" || recipe === "qlora" ? breakdown(c, opts).weights
        : (recipe === "full-fp32" ? 4 : 2) * n;
      const layer = blockLinears(c).reduce((s, [a, b]) => s + a * b, 0) + 2 * c.hidden_size;
      const kept = n - (c.num_hidden_layers - GATHERED_LAYERS) * layer;
      gathered = sharding === "zero2" ? whole : Number((BigInt(whole) * BigInt(kept)) / BigInt(n));
      const root = n - c.num_hidden_layers * layer;
      if (recipe.startsWith("full")) { // FSDP2's reduce-scatter of a layer's, then the root's, gradients
        const w = (recipe === "full-fp32" ? 0 : 2) + 4;
        reducing["backward start"] = w * layer; reducing["backward end"] = w * layer;
        reducing["embedding backward"] = w * root;
      }
    }
    const sharded = SHARDED_PARTS[sharding];
    const holds = ["layer forward", "forward", "loss backward", "backward start", "backward end", "embedding backward"];
    const out = {};
    for (const [moment, parts] of Object.entries(phases)) {
      const next = {};
      for (const [k, v] of Object.entries(parts)) {
        if (sharded.indexOf(k) >= 0) { if (!offload) next[k] = Math.ceil(v / gpus); } else next[k] = v;
      }
      if (!fsdp) next.gradient_buckets = grads;
      else {
        delete next.autocast_cache;
        if (holds.indexOf(moment) >= 0) next.gathered_weights = gathered;
        if (reducing[moment]) next.reduce_scatter_buffers = reducing[moment];
      }
      out[moment] = next;
    }
    return out;
  }

  /** Same as llmbook.memory.OFFLOADED_PARTS: what CPU offload keeps in CPU memory (not foreach
   * AdamW's copies: by default torch steps CPU tensors one at a time). */
  const OFFLOADED_PARTS = ["weights", "master_weights", "gradients", "adapter", "optimizer"];

  /** Same as llmbook.memory.offloaded_bytes: one process's shards in CPU memory, by part. */
  function offloadedBytes(c, o) {
    const opts = Object.assign({ sharding: "zero3" }, o || {}, { offload: false });
    if (opts.sharding !== "zero2" && opts.sharding !== "zero3") throw new Error("offload applies to zero2 and zero3");
    const kept = shardedPhases(c, opts)["optimizer step"];
    const out = {};
    for (const [k, v] of Object.entries(kept)) if (OFFLOADED_PARTS.indexOf(k) >= 0) out[k] = v;
    return out;
  }

  Object.assign(W, { GATHERED_LAYERS, OFFLOADED_PARTS, SHARDED_PARTS, SHARDINGS, offloadedBytes, shardedPhases });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
