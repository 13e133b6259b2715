/*
 * llmbook/memory/sharding.py: DDP, ZeRO and FSDP2 over several GPUs, CPU offload.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { blockLinears, breakdown, optimizerStateBytes, optimizerTemporaries, parameters, stepPhases,
    trainableNumels } = W;

  const SHARDINGS = ["ddp", "zero1", "zero2", "zero3"];
  /** Same as llmbook.memory.FSDP_PHASES: the moments of an FSDP2 step. */
  const FSDP_PHASES = ["layer forward", "forward", "loss backward", "backward start", "backward next",
    "backward end", "embedding backward", "optimizer step"];
  const ZERO1_PARTS = ["optimizer", "master_weights", "optimizer_temporaries"];
  const FSDP_SHARDED = ["optimizer", "master_weights", "weights", "adapter"];
  const total = (d) => Object.values(d).reduce((s, v) => s + v, 0);
  const largestOf = (list) => list.reduce((best, d) => (total(d) > total(best) ? d : best));

  /** Same as llmbook.memory.zero1_partition: each rank's trainable tensors (element counts) under
   * ZeroRedundancyOptimizer: largest first (a stable sort), each to the rank with the fewest so far. */
  function zero1Partition(c, recipe, gpus, rank) {
    const numels = trainableNumels(c, recipe, rank);
    const ranks = Array.from({ length: gpus }, () => []); const sizes = new Array(gpus).fill(0);
    for (const n of numels.slice().sort((a, b) => b - a)) {
      const least = sizes.indexOf(Math.min(...sizes));
      ranks[least].push(n); sizes[least] += n;
    }
    return ranks;
  }

  function zero1RankParts(c, opts) {
    const ranks = zero1Partition(c, opts.recipe, opts.gpus, opts.lora_rank);
    const width = opts.recipe === "full-bf16" ? 2 : 4;
    const states = ranks.map((r) => optimizerStateBytes(r, opts.optimizer, width));
    let rank = opts.rank;
    if (rank === null || rank === undefined) rank = states.indexOf(Math.max(...states));
    if (!(rank >= 0 && rank < opts.gpus)) throw new Error("rank must be from 0 to " + (opts.gpus - 1));
    const numels = ranks[rank]; const master = opts.recipe === "full-master";
    return { optimizer: states[rank], master_weights: master ? 4 * numels.reduce((s, n) => s + n, 0) : 0,
      optimizer_temporaries: master ? 0 : optimizerTemporaries(numels, opts.optimizer, opts.optimizer_impl, width) };
  }

  /** Same as llmbook.memory.sharded_phases: each moment's parts on one of o.gpus GPUs. */
  function shardedPhases(c, o) {
    const opts = Object.assign({ recipe: "full", gpus: 1, sharding: "ddp", offload: false, dtype: "bfloat16",
      lora_rank: 16, optimizer: "adamw", optimizer_impl: "foreach", rank: null }, o || {});
    const { gpus, sharding, offload, recipe } = opts;
    if (SHARDINGS.indexOf(sharding) < 0) throw new Error("unknown sharding " + sharding);
    if (recipe === "inference") throw new Error("sharding applies to training recipes");
    if (!(gpus >= 1)) throw new Error("gpus must be at least 1");
    const fsdp = sharding === "zero2" || sharding === "zero3";
    if (offload && !fsdp) throw new Error("offload applies to zero2 and zero3");
    if (fsdp) return fsdpPhases(c, opts);
    const phases = stepPhases(c, opts);
    const grads = breakdown(c, opts).gradients;
    const mine = sharding === "zero1" ? zero1RankParts(c, opts) : {};
    const out = {};
    for (const [moment, parts] of Object.entries(phases)) {
      const next = Object.assign({}, parts);
      for (const part of ZERO1_PARTS) {
        if (part in next && part in mine) { next[part] = mine[part]; if (!next[part]) delete next[part]; }
      }
      next.gradient_buckets = grads;
      out[moment] = next;
    }
    return out;
  }

  function fsdpPhases(c, opts) {
    const { gpus, sharding, offload, recipe } = opts;
    const compute = recipe === "full" ? "bf16" : null; // MixedPrecisionPolicy, no autocast
    const run = Object.assign({}, opts, { _compute: compute });
    const phases = stepPhases(c, run);
    const L = c.num_hidden_layers; const n = parameters(c);
    const layer = blockLinears(c).reduce((s, [a, b]) => s + a * b, 0) + 2 * c.hidden_size;
    const lora = recipe === "lora" || recipe === "qlora";
    const whole = lora ? breakdown(c, opts).weights : (recipe === "full-fp32" ? 4 : 2) * n;
    const trainedLayer = lora ? blockLinears(c).reduce((s, [a, b]) => s + opts.lora_rank * (a + b), 0) : layer;
    const trainedRoot = lora ? 0 : n - L * layer;
    const trained = trainableNumels(c, recipe, opts.lora_rank);
    const layerBytes = Number((BigInt(whole) * BigInt(layer)) / BigInt(n));
    const rootBytes = whole - L * layerBytes;
    let rootBackward = trainedRoot;
    if (trainedRoot && !c.tie_word_embeddings) rootBackward -= c.vocab_size * c.hidden_size;
    const computeWidth = recipe === "full-fp32" || lora ? 4 : 2;
    const shardWidth = recipe === "full-bf16" || recipe === "full-master" ? 2 : 4;
    const reduceWidth = recipe === "full-bf16" ? 2 : 4;
    const stateWidth = recipe === "full-bf16" ? 2 : 4;
    const shard = (numel) => (offload ? 0 : Math.ceil(shardWidth * numel / gpus));
    let oneLayer = phases["backward start"].activations || 0;
    if (L > 1) {
      const fewer = stepPhases(Object.assign({}, c, { num_hidden_layers: L - 1 }), run);
      oneLayer -= fewer["backward start"].activations || 0;
    }
    let forward; let backward;
    if (sharding === "zero2") {
      forward = { "layer forward": L + 1, forward: L + 1, "loss backward": L };
      backward = { "backward start": [L, L - 1], "backward next": [L - 1, L - 2] };
    } else {
      forward = { "layer forward": 2, forward: 1, "loss backward": 1 };
      backward = { "backward start": [2, 1], "backward next": [2, 1] };
    }
    backward["backward end"] = [1, 0];
    const above = { "backward start": 0, "backward next": 1, "backward end": L - 1 };
    const layerReduce = reduceWidth * trainedLayer;
    const kept = {};
    for (const part of FSDP_SHARDED) {
      const value = phases["optimizer step"][part] || 0;
      if (value && !offload) kept[part] = Math.ceil(value / gpus);
    }
    const skip = FSDP_SHARDED.concat(["gradients", "optimizer_temporaries", "autocast_cache", "embedding_gradient"]);
    const out = {};
    for (const moment of FSDP_PHASES) {
      if (moment === "backward next" && L < 3) continue;
      const source = phases[moment === "backward next" ? "backward start" : moment];
      let parts = Object.assign({}, kept);
      for (const [k, v] of Object.entries(source)) if (skip.indexOf(k) < 0) parts[k] = v;
      if (moment in forward) parts.gathered_weights = rootBytes + forward[moment] * layerBytes;
      else if (moment in backward) {
        const computing = Object.assign({}, parts); const reducing = Object.assign({}, parts);
        if (moment === "backward next") computing.activations = (computing.activations || 0) - oneLayer;
        reducing.activations = (computing.activations || 0) - oneLayer;
        delete reducing.backward_workspace;
        [[computing, backward[moment][0], above[moment]], [reducing, backward[moment][1], above[moment] + 1]]
          .forEach(([d, gathered, done]) => {
            d.gathered_weights = rootBytes + gathered * layerBytes;
            d.root_gradients = computeWidth * rootBackward;
            d.gradients = shard(done * trainedLayer);
          });
        if (above[moment]) computing.reduce_scatter_buffers = layerReduce;
        reducing.layer_gradients = computeWidth * trainedLayer;
        reducing.reduce_scatter_buffers = layerReduce;
        const candidates = [computing, reducing];
        if (sharding === "zero3") { // its parameters being copied out of the flat buffer
          const copying = Object.assign({}, computing, { gathered_weights: rootBytes + 2 * layerBytes });
          delete copying.backward_workspace;
          candidates.push(copying);
        }
        parts = largestOf(candidates);
      } else if (moment === "embedding backward") {
        const rootGrads = computeWidth * trainedRoot + (source.embedding_gradient || 0);
        Object.assign(parts, { gathered_weights: rootBytes, root_gradients: rootGrads,
          gradients: shard(L * trainedLayer) });
        const computing = Object.assign({}, parts, { reduce_scatter_buffers: layerReduce });
        const reducing = Object.assign({}, parts, { reduce_scatter_buffers: reduceWidth * trainedRoot });
        reducing.gradients += shard(trainedRoot);
        reducing.gathered_weights = 0; // resharded before it is reduced
        parts = largestOf([computing, reducing]);
      } else if (!offload) {
        parts.gradients = shard(trained.reduce((s, k) => s + k, 0));
        if (recipe !== "full-master") {
          parts.optimizer_temporaries = optimizerTemporaries(trained.map((k) => Math.ceil(k / gpus)),
            opts.optimizer, opts.optimizer_impl, stateWidth);
        }
      }
      const clean = {};
      for (const [k, v] of Object.entries(parts)) if (v) clean[k] = v;
      out[moment] = clean;
    }
    return out;
  }

  /** Same as llmbook.memory.OFFLOADED_PARTS: what CPU offload keeps in CPU memory between steps. */
  const OFFLOADED_PARTS = ["weights", "master_weights", "gradients", "adapter", "optimizer"];

  /** Same as llmbook.memory.offloaded_bytes: one process's shards in CPU memory, by part, and the
   * temporaries of the CPU optimizer step (torch's default there: the for-loop). */
  function offloadedBytes(c, o) {
    const opts = Object.assign({ sharding: "zero3", optimizer_impl: "for-loop" }, o || {}, { offload: false });
    if (opts.sharding !== "zero2" && opts.sharding !== "zero3") throw new Error("offload applies to zero2 and zero3");
    const kept = shardedPhases(c, opts)["optimizer step"];
    const out = {};
    for (const [k, v] of Object.entries(kept)) {
      if (OFFLOADED_PARTS.indexOf(k) >= 0 || k === "optimizer_temporaries") out[k] = v;
    }
    return out;
  }

  Object.assign(W, { FSDP_PHASES, OFFLOADED_PARTS, SHARDINGS, offloadedBytes, shardedPhases, zero1Partition });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
