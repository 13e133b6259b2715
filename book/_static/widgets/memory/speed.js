/*
 * llmbook/memory/speed.py: a roofline, the least time a prompt pass and a decoding step
 * take on a GPU (its bandwidth and peaks from presets.js, Python's GPU_SPECS).
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { blockLinears, headDim, kvCacheBytes, kvLayers, weightBytes } = W;


  /** Same as llmbook.memory.COMPUTE: what each way of loading multiplies in. */
  const COMPUTE = { float32: "fp32", float16: "fp16", bfloat16: "bf16", int8: "int8", nf4: "bf16", fp4: "bf16",
    mxfp4: "bf16" };

  /** Same as llmbook.memory.compute_for: COMPUTE's key if the GPU lists it, else its fastest peak. */
  function computeFor(gpu, dtype, quant) {
    const key = COMPUTE[quant || dtype];
    if (key in gpu.peak) return key;
    return Object.keys(gpu.peak).reduce((a, b) => (gpu.peak[b] > gpu.peak[a] ? b : a));
  }

  /** Same as llmbook.memory.matmul_parameters: [decoder layers' weights a token multiplies,
   * the output layer's]; a book preset carries Python's count. */
  function matmulParameters(c) {
    if (c.matmul_parameters) return c.matmul_parameters;
    const perLayer = blockLinears(c).reduce((s, [a, b]) => s + a * b, 0);
    return [c.num_hidden_layers * perLayer, c.vocab_size * c.hidden_size];
  }

  /** Same as llmbook.memory.attention_flops. */
  function attentionFlops(c, batch, tokens, past) {
    const heads = c.num_attention_heads; const dim = headDim(c);
    let total = 0;
    const upto = (n, chunk) => { // sum of (p mod chunk + 1) for p < n
      const q = Math.floor(n / chunk); const r = n % chunk;
      return q * chunk * (chunk + 1) / 2 + r * (r + 1) / 2;
    };
    for (const [kind, window] of kvLayers(c)) {
      const first = past + 1;
      let seen;
      if (kind === "chunked_attention" && window) seen = upto(past + tokens, window) - upto(past, window);
      else if (kind === "sliding_attention" && window && first + tokens - 1 > window) {
        const n = Math.max(0, Math.min(tokens, window - first + 1));
        seen = n * first + n * (n - 1) / 2 + (tokens - n) * window;
      } else if (kind === "full_attention" || kind === "sliding_attention" || kind === "chunked_attention") {
        seen = tokens * first + tokens * (tokens - 1) / 2;
      } else continue;
      total += 4 * batch * heads * dim * seen;
    }
    return total;
  }

  /** Same as llmbook.memory.forward_flops. */
  function forwardFlops(c, batch, tokens, past, logits) {
    const [layers, head] = matmulParameters(c);
    return 2 * batch * (tokens * layers + logits * head) + attentionFlops(c, batch, tokens, past);
  }

  /** Same as llmbook.memory.StoredWeights.read: bytes of weights a pass over `tokens` tokens reads:
   * the weights but the input embedding (its tokens' rows only, in the unquantized dtype), and the
   * routed experts uniform routing is expected to touch. */
  function weightsRead(c, width, quant, doubleQuant, tokens) {
    const rowWidth = quant === "mxfp4" ? 2 : width; // the embedding is never quantized
    const embedding = c.vocab_size * c.hidden_size * rowWidth;
    let total = weightBytes(c, width, quant, doubleQuant) - (c.tie_word_embeddings ? 0 : embedding);
    total += tokens * c.hidden_size * rowWidth;
    if (c.expert_bytes) {
      const key = width + "|" + (quant || "") + "|" + (doubleQuant && quant === "nf4" ? "dq" : "");
      const experts = c.expert_bytes[key];
      if (experts == null) throw new Error("no experts counted for " + key);
      if (experts) {
        const k = c.num_experts_per_tok || c.experts_per_token;
        const e = c.num_local_experts || c.num_experts;
        total += Math.round(experts * ((1 - Math.pow(1 - k / e, tokens)) - 1));
      }
    }
    return total;
  }

  /** Same as llmbook.memory.roofline, for a GPU of gpuData.gpus (its bandwidth and peaks). */
  function roofline(c, gpu, compute, batch, prompt, context, width, quant, kvBytes, kvQuant, doubleQuant) {
    if (!(compute in gpu.peak)) throw new Error(gpu.name + " has no " + compute + " peak");
    if (!(batch >= 1 && prompt >= 1)) throw new Error("batch and prompt must be at least 1");
    context = context || prompt;
    const peak = gpu.peak[compute]; const bw = gpu.bandwidth;
    const pFlops = forwardFlops(c, batch, prompt, 0, 1);
    const pBytes = weightsRead(c, width, quant, doubleQuant, batch * prompt);
    const step = (b) => [forwardFlops(c, b, 1, context, 1),
      weightsRead(c, width, quant, doubleQuant, b) + kvCacheBytes(c, b, context, kvBytes, "window", kvQuant || null)];
    const [sFlops, sBytes] = step(batch);
    let critical = null;
    for (let i = 0; i < 20; i++) {
      const [f, m] = step(Math.pow(2, i));
      if (f / peak >= m / bw) { critical = Math.pow(2, i); break; }
    }
    const stepS = Math.max(sFlops / peak, sBytes / bw);
    return { ttft_s: Math.max(pFlops / peak, pBytes / bw), ttft_bound: pFlops / peak >= pBytes / bw ? "compute" : "memory",
      prompt_flops: pFlops, prompt_bytes: pBytes, step_s: stepS,
      step_bound: sFlops / peak >= sBytes / bw ? "compute" : "memory", step_flops: sFlops, step_bytes: sBytes,
      decode_tok_s: batch / stepS, critical_batch: critical, ridge: peak / bw };
  }

  Object.assign(W, { COMPUTE, computeFor, attentionFlops, forwardFlops, matmulParameters, roofline, weightsRead });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
