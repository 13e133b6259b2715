/*
 * llmbook/memory/kv_cache.py: the KV cache, layer by layer.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { headDim, kvHeads } = W;

  const KEEPS = ["all", "window"];
  const KV_QUANTS = [null, "fp8", "int4", "int2"];
  const ATTENTION_TYPES = ["full_attention", "sliding_attention", "chunked_attention", "dummy"];
  const STATE_TYPES = ["linear_attention", "conv", "hybrid", "hybrid_sliding"];
  const HYBRID_ATTENTION = { hybrid: "full_attention", hybrid_sliding: "sliding_attention" };

  /** Same as llmbook.memory.kv_layers: [layer type, window] of each layer, from layer_types
   * or a sliding_window / attention_chunk_size on every layer. */
  function kvLayers(c) {
    const L = c.num_hidden_layers;
    let types = c.layer_types;
    if (!types) {
      const kind = c.sliding_window != null ? "sliding_attention"
        : c.attention_chunk_size != null ? "chunked_attention" : "full_attention";
      types = new Array(L).fill(kind);
    }
    const modes = c.kv_sharing_modes || [];
    types = types.slice(0, L).map((t, i) => (t === "moe" || t === "mlp" || modes[i] === "reuse" ? "dummy" : t));
    if (types.length < L) throw new Error("layer_types names " + types.length + " layers, not " + L);
    const unknown = types.filter((t) => ATTENTION_TYPES.indexOf(t) < 0 && STATE_TYPES.indexOf(t) < 0);
    if (unknown.length) throw new Error("layers of type " + unknown[0] + " cache in a layout not counted");
    return types.map((t) => [t, t === "sliding_attention" || t === "hybrid_sliding" ? c.sliding_window
      : t === "chunked_attention" ? c.attention_chunk_size : null]);
  }

  /** Same as llmbook.memory.kv_widths: values cached per token and layer, [keys, values]. */
  function kvWidths(c) {
    if (c.kv_lora_rank) return [c.kv_lora_rank, c.qk_rope_head_dim];
    return [kvHeads(c) * headDim(c), kvHeads(c) * (c.v_head_dim || headDim(c))];
  }

  /** Same as llmbook.memory.kv_value_bytes: bytes per cached value over `tokens` tokens. */
  function kvValueBytes(tokens, width, quant, group, residual) {
    group = group || 64; residual = residual === undefined ? 128 : residual;
    if (KV_QUANTS.indexOf(quant === undefined ? null : quant) < 0) throw new Error("unknown kv_quant " + quant);
    if (!quant || tokens === 0) return width;
    if (quant === "fp8") return 1;
    const quantized = (quant === "int4" ? 4 : 2) / 8 + 2 * width / group;
    const kept = Math.min(tokens, residual);
    return (kept * width + (tokens - kept) * quantized) / tokens;
  }

  /** Same as llmbook.memory.kv_cache_layers: each layer's type, kept tokens, bytes of its keys
   * and values, and its fixed-size state (read by Python on the meta device: c.state_bytes, by
   * the model's dtype, in the book's presets). */
  function kvCacheLayers(c, batch, tokens, width, keep, stateDtype) {
    keep = keep || "all";
    if (KEEPS.indexOf(keep) < 0) throw new Error("unknown keep " + keep);
    const kinds = kvLayers(c);
    const attends = kinds.map(([t]) => t in HYBRID_ATTENTION || (ATTENTION_TYPES.indexOf(t) >= 0 && t !== "dummy"));
    const [k, v] = attends.some((a) => a) ? kvWidths(c) : [0, 0];
    let states = kinds.map(() => 0);
    if (kinds.some(([t]) => STATE_TYPES.indexOf(t) >= 0)) {
      const dtype = stateDtype || (width === 4 ? "float32" : "bfloat16");
      states = c.state_bytes && c.state_bytes[dtype];
      if (!states) throw new Error("this model's recurrent state is known for the book's presets only");
    }
    return kinds.map(([type, window], i) => {
      let kept = attends[i] ? tokens : 0;
      if (window && keep === "window") kept = Math.min(kept, window);
      return { type, tokens: kept, bytes: batch * kept * (k + v) * width, state: tokens > 0 ? batch * states[i] : 0 };
    });
  }

  /** Same as llmbook.memory.kv_cache_bytes. */
  function kvCacheBytes(c, batch, tokens, width, keep, quant, group, residual, stateDtype) {
    let total = 0;
    const layers = kvCacheLayers(c, batch, tokens, 1, keep, stateDtype || (width === 4 ? "float32" : "bfloat16"));
    if ((quant === "int4" || quant === "int2") && layers.some((l) => l.type !== "full_attention")) {
      throw new Error("an int4 or int2 cache takes only models whose layers all use full attention");
    }
    for (const layer of layers) {
      total += layer.state;
      if (layer.tokens) total += layer.bytes * kvValueBytes(layer.tokens, width, quant, group, residual);
    }
    return Math.round(total);
  }

  Object.assign(W, { HYBRID_ATTENTION, KEEPS, KV_QUANTS, STATE_TYPES, kvCacheBytes, kvCacheLayers, kvLayers, kvValueBytes, kvWidths });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
