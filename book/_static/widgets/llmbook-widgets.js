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
 * Works as a browser script (window.LLMBookWidgets) and as a CommonJS module (Node).
 */
(function (root) {
  "use strict";

  // ---------------------------------------------------------------- float formats
  // ebits/mbits: exponent and mantissa widths. ieee: exponent all-ones means inf/NaN.
  // e4m3fn (fn = finite, NaN only): all-ones exponent is a normal binade except
  // mantissa all-ones, which is NaN; there is no infinity. Overflow follows ml_dtypes
  // (round to nearest even, then inf where the format has it, else NaN); note that
  // torch instead saturates to the largest finite value for float8_e4m3fn.
  // finite (fp4 e2m1, fp6): no infinity and no NaN; overflow saturates (as ml_dtypes),
  // and a NaN has no code (encode returns null). unsigned (e8m0, the MX scale): 8
  // exponent bits, no sign, no mantissa: 2**(E - 127), 255 is NaN; a positive value
  // rounds to the nearest power of two, ties up (ml_dtypes and torch agree); zero and
  // negatives have no code (null).
  const FORMATS = {
    fp32: { name: "fp32", ebits: 8, mbits: 23, ieee: true },
    fp16: { name: "fp16", ebits: 5, mbits: 10, ieee: true },
    bf16: { name: "bf16", ebits: 8, mbits: 7, ieee: true },
    e4m3: { name: "fp8 e4m3", ebits: 4, mbits: 3, ieee: false },
    e5m2: { name: "fp8 e5m2", ebits: 5, mbits: 2, ieee: true },
    e2m1: { name: "fp4 e2m1", ebits: 2, mbits: 1, ieee: false, finite: true },
    e8m0: { name: "e8m0 (MX scale)", ebits: 8, mbits: 0, ieee: false, unsigned: true },
  };
  function complete(f) {
    f.bias = (1 << (f.ebits - 1)) - 1;
    f.width = (f.unsigned ? 0 : 1) + f.ebits + f.mbits;
    f.expMax = (1 << f.ebits) - 1; // all-ones exponent field
    return f;
  }
  for (const f of Object.values(FORMATS)) complete(f);

  function pow2(n) {
    return Math.pow(2, n);
  }

  /** Value of a bit pattern (an integer below 2**width) in format f. */
  function decode(bits, f) {
    if (bits === null) return null;
    if (f.unsigned) return bits === f.expMax ? NaN : pow2(bits - f.bias);
    const sign = Math.floor(bits / pow2(f.width - 1)) % 2 ? -1 : 1;
    const e = Math.floor(bits / pow2(f.mbits)) % pow2(f.ebits);
    const m = bits % pow2(f.mbits);
    if (f.ieee && e === f.expMax) return m === 0 ? sign * Infinity : NaN;
    if (!f.ieee && !f.finite && e === f.expMax && m === pow2(f.mbits) - 1) return NaN;
    if (e === 0) return sign * m * pow2(1 - f.bias - f.mbits);
    return sign * (pow2(f.mbits) + m) * pow2(e - f.bias - f.mbits);
  }

  function nanBits(f) {
    if (f.unsigned) return f.expMax;
    if (f.finite) return null;
    return f.ieee ? (f.expMax * pow2(f.mbits) + pow2(f.mbits - 1)) : (pow2(f.width - 1) - 1);
  }

  function maxFiniteBits(f) {
    if (f.unsigned) return f.expMax - 1;
    const top = f.expMax * pow2(f.mbits) + pow2(f.mbits) - 1; // all ones but the sign
    return f.ieee ? top - pow2(f.mbits) : f.finite ? top : top - 1;
  }

  /** floor(log2(a)) for a finite a > 0, exactly (Math.log2 can be off near powers of two). */
  function floorLog2(a) {
    let e = Math.floor(Math.log2(a));
    if (pow2(e) > a) e -= 1;
    else if (pow2(e + 1) <= a) e += 1;
    return e;
  }

  /** E8M0 code of x: nearest power of two, ties up, at least 2**-127; NaN past 2**127. */
  function encodeE8m0(x, f) {
    if (Number.isNaN(x) || x === Infinity || x === -Infinity) return f.expMax;
    if (!(x > 0)) return null;
    let e = floorLog2(x);
    if (x >= 1.5 * pow2(e)) e += 1;
    e = Math.max(e, -f.bias);
    return e > f.bias ? f.expMax : e + f.bias;
  }

  function roundHalfEven(q) {
    const fl = Math.floor(q);
    const d = q - fl;
    if (d > 0.5) return fl + 1;
    if (d < 0.5) return fl;
    return fl % 2 === 0 ? fl : fl + 1;
  }

  /** Nearest bit pattern to x in format f (round half to even). */
  function encode(x, f) {
    if (f.unsigned) return encodeE8m0(x, f);
    if (Number.isNaN(x)) return nanBits(f);
    const signBit = x < 0 || Object.is(x, -0) ? pow2(f.width - 1) : 0;
    const a = Math.abs(x);
    const overflow = signBit + (f.ieee ? f.expMax * pow2(f.mbits) : f.finite ? maxFiniteBits(f) : nanBits(f));
    if (a === Infinity) return overflow;
    if (a === 0) return signBit;
    const minExp = 1 - f.bias;
    let e = floorLog2(a);
    if (e < minExp) e = minExp; // subnormal range: fixed exponent
    let r = roundHalfEven(a / pow2(e - f.mbits)); // scaled significand, an integer
    if (r === pow2(f.mbits + 1)) { r /= 2; e += 1; }
    let bits;
    if (r < pow2(f.mbits)) bits = r; // subnormal (or zero): exponent field 0
    else bits = (e + f.bias) * pow2(f.mbits) + (r - pow2(f.mbits));
    if (bits > maxFiniteBits(f)) return overflow;
    return signBit + bits;
  }

  function classify(bits, f) {
    if (bits === null) return "not representable";
    const v = decode(bits, f);
    if (f.unsigned) return Number.isNaN(v) ? "NaN" : "power of two";
    if (Number.isNaN(v)) return "NaN";
    if (!Number.isFinite(v)) return "infinity";
    if (v === 0) return "zero";
    const e = Math.floor(bits / pow2(f.mbits)) % pow2(f.ebits);
    return e === 0 ? "subnormal" : "normal";
  }

  /** The representable values just below and above the (finite) value of bits. */
  function neighbours(bits, f) {
    const v = decode(bits, f);
    if (v === null || !Number.isFinite(v)) return { below: null, above: null };
    if (f.unsigned) { // no zero and no sign: the powers of two on either side
      return { below: bits > 0 ? decode(bits - 1, f) : null,
        above: bits < maxFiniteBits(f) ? decode(bits + 1, f) : null };
    }
    const signBit = pow2(f.width - 1);
    const mag = bits % signBit;
    const negative = bits >= signBit;
    const maxMag = maxFiniteBits(f);
    const up = (m) => (m >= maxMag ? null : m + 1); // away from zero, finite only
    const step = (m, neg) => (m === null ? null : decode((neg ? signBit : 0) + m, f));
    let below; let above;
    if (mag === 0) {
      below = -decode(1, f); above = decode(1, f);
    } else if (!negative) {
      below = step(mag - 1, false); above = step(up(mag), false);
    } else {
      below = step(up(mag), true); above = step(mag - 1, true);
    }
    return { below, above };
  }

  function fields(bits, f) {
    if (bits === null) return { sign: "", exponent: "", mantissa: "" };
    const s = bits.toString(2).padStart(f.width, "0");
    const k = f.unsigned ? 0 : 1;
    return { sign: s.slice(0, k), exponent: s.slice(k, k + f.ebits), mantissa: s.slice(k + f.ebits) };
  }

  // ---------------------------------------------------------------- MX blocks
  // The OCP MX formats (chapter 12): a block of 32 elements shares one E8M0 scale, the
  // largest power of two of the block's maximum divided by the element format's largest
  // power of two; each element is x / scale rounded to the element format, saturating.
  // Mirrors llmbook.pages.ch12.quantize_mx (and torchao's to_mx), including torchao's
  // clamp of the divisor to 2**-126 (the smallest normal fp32).
  const MX_BLOCK = 32;
  const MX_FORMATS = {
    "MXFP4 E2M1": FORMATS.e2m1,
    "MXFP6 E2M3": complete({ name: "fp6 e2m3", ebits: 2, mbits: 3, ieee: false, finite: true }),
    "MXFP6 E3M2": complete({ name: "fp6 e3m2", ebits: 3, mbits: 2, ieee: false, finite: true }),
    "MXFP8 E4M3": FORMATS.e4m3,
    "MXFP8 E5M2": FORMATS.e5m2,
  };

  /** One MX block: its E8M0 scale code and, per element, the code, the element's value and
   * the value stored (element x scale). values: up to MX_BLOCK finite numbers. */
  function quantizeMxBlock(values, fmt) {
    const f = MX_FORMATS[fmt];
    if (!f) throw new Error("unknown MX format " + fmt + "; choose one of " + Object.keys(MX_FORMATS).join(", "));
    const largest = decode(maxFiniteBits(f), f);
    const emax = floorLog2(largest);
    const amax = Math.max(0, ...values.map(Math.abs));
    const amaxPow2 = amax < pow2(-126) ? -127 : floorLog2(amax); // fp32 exponent field
    const shared = Math.max(-127, Math.min(127, amaxPow2 - emax));
    const divisor = pow2(Math.max(shared, -126));
    const scale = pow2(shared);
    const elements = values.map((x) => {
      const q = Math.max(-largest, Math.min(largest, x / divisor)); // saturate
      const code = encode(Object.is(q, 0) && (x < 0 || Object.is(x, -0)) ? -0 : q, f);
      const element = decode(code, f);
      return { code, element, stored: element * scale };
    });
    return { scaleCode: shared + 127, scale, elements, format: f };
  }

  // ---------------------------------------------------------------- int8 and nf4
  /** bitsandbytes' NF4 code book (bitsandbytes.functional.get_4bit_type("nf4")). */
  const NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0];

  /** Absmax int8: q = round(127 x / absmax) (half to even), clamped to [-127, 127]. */
  function quantizeInt8(x, absmax) {
    const q = Math.max(-127, Math.min(127, roundHalfEven((127 * x) / absmax)));
    return { code: q, value: (q * absmax) / 127 };
  }

  /** NF4: the code book entry nearest to x / absmax (bitsandbytes compares with the
   * midpoints between entries); value = entry x absmax. */
  function quantizeNf4(x, absmax) {
    const n = Math.max(-1, Math.min(1, x / absmax));
    let code = 0;
    for (let i = 0; i < NF4.length - 1; i++) if (n > (NF4[i] + NF4[i + 1]) / 2) code = i + 1;
    return { code, value: NF4[code] * absmax };
  }

  // ---------------------------------------------------------------- memory
  const BLOCK4 = 64; const NESTED = 256; const CODE4 = 16; const CODE8 = 256;
  const RECIPES = ["inference", "full", "full-fp32", "full-bf16", "full-master", "lora", "qlora"];
  const COMPUTE_MODES = ["fp32", "bf16", "autocast"];
  const ATTENTIONS = ["sdpa", "eager"];

  function headDim(c) { return c.head_dim || c.hidden_size / c.num_attention_heads; }
  function kvHeads(c) { return c.num_key_value_heads || c.num_attention_heads; }

  /** The linear layers of one Llama block: [in, out] per projection. */
  function blockLinears(c) {
    const h = c.hidden_size; const q = c.num_attention_heads * headDim(c); const kv = kvHeads(c) * headDim(c);
    const i = c.intermediate_size;
    return [[h, q], [h, kv], [h, kv], [q, h], [h, i], [h, i], [i, h]];
  }

  function constants(numel, outFeatures, quant, doubleQuant) {
    if (quant === "int8") return 4 * outFeatures;
    if (quant !== "nf4") return 0;
    const blocks = Math.ceil(numel / BLOCK4);
    if (!doubleQuant) return 4 * blocks + 4 * CODE4;
    return blocks + 4 * Math.ceil(blocks / NESTED) + 4 * CODE8 + 4 + 4 * CODE4;
  }

  function parameters(c) {
    const linear = blockLinears(c).reduce((s, [a, b]) => s + a * b, 0);
    const perLayer = linear + 2 * c.hidden_size;
    const emb = c.vocab_size * c.hidden_size;
    return emb * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * perLayer + c.hidden_size;
  }

  /** Bytes of a Llama model's weights as transformers + bitsandbytes store them
   * (llmbook.memory.estimate): embeddings, head and norms in dtype; the blocks' linear
   * layers quantized when asked; rotary buffers in fp32; quantization constants. */
  function weightBytes(c, width, quant, doubleQuant) {
    const emb = c.vocab_size * c.hidden_size;
    let bytes = emb * width * (c.tie_word_embeddings ? 1 : 2);
    bytes += (2 * c.num_hidden_layers + 1) * c.hidden_size * width; // RMSNorm weights
    bytes += 2 * (headDim(c) / 2) * 4; // rotary inv_freq and original_inv_freq, fp32
    for (const [din, dout] of blockLinears(c)) {
      const numel = din * dout;
      let w;
      if (quant === "int8") w = numel;
      else if (quant === "nf4") w = Math.floor((numel + 1) / 2);
      else w = numel * width;
      bytes += c.num_hidden_layers * (w + constants(numel, dout, quant, doubleQuant));
    }
    return bytes;
  }

  function kvCacheBytes(c, batch, tokens, width) {
    return 2 * c.num_hidden_layers * batch * tokens * kvHeads(c) * headDim(c) * width;
  }

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

  function loraParameters(c, rank) {
    return c.num_hidden_layers * blockLinears(c).reduce((s, [a, b]) => s + rank * (a + b), 0);
  }

  const OPTIMIZERS = ["adamw", "adamw8bit", "sgd"];

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

  const WIDTH = { float32: 4, bfloat16: 2, float16: 2 };

  /** Same as llmbook.memory.breakdown: bytes of each part of a job. */
  function breakdown(c, o) {
    const opts = Object.assign({ recipe: "inference", dtype: "bfloat16", quantization: null, double_quant: false,
      batch: 1, context: 2048, checkpointing: false, lora_rank: 16, optimizer: "adamw",
      attention: "sdpa" }, o || {});
    const width = WIDTH[opts.dtype];
    if (!width) throw new Error("unknown dtype " + opts.dtype);
    if (RECIPES.indexOf(opts.recipe) < 0) throw new Error("unknown recipe " + opts.recipe);
    if (opts.recipe === "inference") {
      return { weights: weightBytes(c, width, opts.quantization, opts.double_quant),
        kv_cache: kvCacheBytes(c, opts.batch, opts.context, width),
        activations: prefillActivationBytes(c, opts.batch, opts.context, width) };
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

  /** llmbook.memory._compute_mode: how a training recipe computes. */
  function computeMode(recipe, width) {
    if (recipe === "full") return "autocast";
    if (recipe === "full-fp32" || ((recipe === "lora" || recipe === "qlora") && width === 4)) return "fp32";
    return "bf16";
  }

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
      checkpointing: false, lora_rank: 16, optimizer: "adamw", attention: "sdpa" }, o || {});
    const parts = breakdown(c, opts);
    if (opts.recipe === "inference") return { "prompt pass": parts };
    const recipe = opts.recipe; const width = WIDTH[opts.dtype]; const compute = computeMode(recipe, width);
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
    if (recipe === "full") {
      const head = 2 * V * h; const oneLayer = Math.floor((parts.autocast_cache - head) / L);
      cast = { forward: parts.autocast_cache,
        "loss backward": opts.checkpointing ? head : parts.autocast_cache,
        "backward start": opts.checkpointing ? oneLayer : parts.autocast_cache - head,
        "layer forward": parts.autocast_cache - head,
        "backward end": oneLayer };
    }
    const tiedExtra = full && c.tie_word_embeddings ? (recipe === "full" ? 1 : 2) * gradWidth * V * h : 0;
    const dequantized = recipe === "qlora" ? width * Math.max(...block.map(([a, b]) => a * b)) : 0;
    const temporaries = opts.optimizer === "adamw" && recipe !== "full-master"
      ? (recipe === "full-bf16" ? 2 : 4) * trainableNumels(c, recipe, opts.lora_rank).reduce((s, n) => s + n, 0) : 0;
    const share = LAYER_WORKSPACE[lora ? recipe + (compute === "fp32" ? "-fp32" : "") : "full"];
    const workspace = Math.floor(Math.max(share.backward, opts.checkpointing ? share.recompute : 0) * layer);
    const forwardWorkspace = Math.floor(share.forward * layer);
    function moment(name, more) {
      const out = Object.assign({}, kept);
      const extra = Object.assign({ autocast_cache: cast[name] || 0, logits: logits }, more);
      for (const [k, v] of Object.entries(extra)) if (v) out[k] = v;
      return out;
    }
    return {
      "layer forward": moment("layer forward", { activations: saved - 4 * tokensV, forward_workspace: forwardWorkspace,
        dequantized_weight: dequantized, logits: 0, previous_logits: logits }),
      forward: moment("forward", { activations: saved, logits_fp32: compute === "fp32" ? 0 : 4 * tokensV,
        previous_logits: logits }),
      "loss backward": moment("loss backward", { activations: saved, loss_backward: LOSS_BACKWARD_BYTES * tokensV }),
      "backward start": moment("backward start", { gradients: full ? gradWidth * V * h : 0,
        activations: parts.activations - 4 * tokensV, backward_workspace: workspace, dequantized_weight: dequantized }),
      "backward end": moment("backward end", { gradients: parts.gradients - gradWidth * late, activations: layer,
        backward_workspace: workspace, dequantized_weight: dequantized }),
      "embedding backward": moment("embedding backward", { gradients: parts.gradients, embedding_gradient: tiedExtra }),
      "optimizer step": moment("optimizer step", { gradients: parts.gradients, optimizer_temporaries: temporaries }),
    };
  }

  /** Same as llmbook.memory.peak: [moment, parts] of the moment that holds the most. */
  function peak(c, o) {
    return largest(stepPhases(c, o));
  }

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
  function fitsOn(totalBytes, gpuData) {
    return gpuData.gpus.filter((g) => totalBytes <= g.usable_bytes).map((g) => g.name);
  }

  const api = { FORMATS, MX_FORMATS, MX_BLOCK, quantizeMxBlock, NF4, RECIPES, decode, encode, classify,
    neighbours, fields, roundHalfEven,
    quantizeInt8, quantizeNf4, parameters, weightBytes, kvCacheBytes, prefillActivationBytes,
    trainingActivationBytes, autocastCacheBytes, loraParameters, trainableNumels, optimizerStateBytes,
    OPTIMIZERS, ATTENTIONS, breakdown, stepPhases, peak, fitsOn, SHARDINGS, shardedPhases, offloadedBytes, largest };

  // ---------------------------------------------------------------- user interface
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const ch of children || []) e.appendChild(ch);
    return e;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (Number.isNaN(v)) return "NaN";
    if (!Number.isFinite(v)) return v > 0 ? "+inf" : "-inf";
    if (v === 0) return Object.is(v, -0) ? "-0" : "0";
    const a = Math.abs(v);
    return a >= 1e6 || a < 1e-4 ? v.toExponential(6) : String(Number(v.toPrecision(8)));
  }

  function floatExplorer(host) {
    const id = "fx" + Math.random().toString(36).slice(2, 8);
    const input = el("input", { type: "text", id: id + "-v", value: host.dataset.value || "0.1", inputmode: "decimal",
      "aria-describedby": id + "-help", class: "llmb-input" });
    const slider = el("input", { type: "range", min: "-16", max: "16", step: "0.01", value: "0",
      "aria-label": "drag: value on a logarithmic scale (2 to the power shown)", class: "llmb-slider" });
    const scale = el("input", { type: "text", id: id + "-s", value: host.dataset.scale || "1", inputmode: "decimal",
      class: "llmb-input llmb-small" });
    const table = el("table", { class: "llmb-table" });
    const qtable = el("table", { class: "llmb-table" });
    host.appendChild(el("div", { class: "llmb-controls" }, [
      el("label", { for: id + "-v", text: "Value " }), input, slider,
      el("label", { for: id + "-s", text: " Scale (absmax) for int8 and nf4 " }), scale]));
    host.appendChild(el("p", { id: id + "-help", class: "llmb-help",
      text: "Type a number (1e-5, -65504, inf, nan), or drag. Click a bit, or focus it and press Enter or Space, to flip it." }));
    host.appendChild(table);
    host.appendChild(qtable);
    const block = el("textarea", { id: id + "-mx", rows: "3", class: "llmb-input llmb-block",
      "aria-describedby": id + "-mxhelp" });
    block.value = host.dataset.block || "0.12 -0.07 0.31 0.02 -0.25 0.18 -0.11 0.05 0.09 -0.14 0.22 -0.03 " +
      "0.27 -0.19 0.08 0.01 -0.06 0.15 -0.21 0.04 0.11 -0.09 0.13 -0.02 0.17 0.06 -0.12 0.24 -0.16 0.03 0.1 4.5";
    const mxFormat = el("select", { id: id + "-mxf" });
    for (const name of Object.keys(MX_FORMATS)) mxFormat.appendChild(el("option", { value: name, text: name }));
    const mxTable = el("table", { class: "llmb-table llmb-mx" });
    const mxMessage = el("p", { class: "llmb-error llmb-mx-message", "aria-live": "polite" });
    host.appendChild(el("div", { class: "llmb-controls" }, [
      el("label", { for: id + "-mx", text: "A block of up to " + MX_BLOCK + " values " }), block,
      el("label", { for: id + "-mxf", text: " in " }), mxFormat]));
    host.appendChild(el("p", { id: id + "-mxhelp", class: "llmb-help",
      text: "Separate the values with spaces or commas. The block shares one E8M0 scale (a power of two); " +
        "each value is stored as a small float times that scale." }));
    host.appendChild(mxMessage);
    host.appendChild(mxTable);

    function setValue(x) { input.value = fmt(x) === "NaN" ? "nan" : fmt(x); render(); }

    function parse(s) {
      const t = s.trim().toLowerCase();
      if (t === "nan") return NaN;
      if (t === "inf" || t === "+inf" || t === "infinity") return Infinity;
      if (t === "-inf" || t === "-infinity") return -Infinity;
      return t === "" ? NaN : Number(t);
    }

    function render() {
      const x = parse(input.value);
      table.innerHTML = "";
      table.appendChild(el("caption", { text: "The value in each format" }));
      table.appendChild(el("tr", {}, ["format", "stored value", "bits (sign, exponent, mantissa)", "kind",
        "rounding error", "next below", "next above"].map((t) => el("th", { scope: "col", text: t }))));
      for (const [key, f] of Object.entries(FORMATS)) {
        const bits = encode(x, f);
        const v = decode(bits, f);
        const parts = fields(bits, f);
        if (bits === null) {
          const why = f.unsigned ? "a scale is positive: no code for this value" : "this format has no NaN";
          table.appendChild(el("tr", { "data-format": key }, [
            el("th", { scope: "row", text: f.name }), el("td", { class: "llmb-value", text: "-" }), el("td", {}),
            el("td", { class: "llmb-kind", text: "not representable" }), el("td", { text: why }),
            el("td", { text: "-" }), el("td", { text: "-" })]));
          continue;
        }
        const bitCell = el("td", { class: "llmb-bits" });
        let index = f.width - 1;
        for (const [part, str] of [["sign", parts.sign], ["exponent", parts.exponent], ["mantissa", parts.mantissa]]) {
          for (const ch of str) {
            const position = index;
            const b = el("button", { type: "button", class: "llmb-bit llmb-" + part, "data-format": key,
              "data-bit": String(position), "aria-label": f.name + " " + part + " bit " + position + ", now " + ch,
              text: ch });
            b.addEventListener("click", () => {
              const flipped = Math.floor(bits / pow2(position)) % 2 ? bits - pow2(position) : bits + pow2(position);
              setValue(decode(flipped, f));
              const again = host.querySelector(`button[data-format="${key}"][data-bit="${position}"]`);
              if (again) again.focus();
            });
            bitCell.appendChild(b);
            index -= 1;
          }
          bitCell.appendChild(document.createTextNode(" "));
        }
        const err = Number.isFinite(x) && Number.isFinite(v) ? v - x : null;
        const rel = err !== null && x !== 0 ? " (" + (100 * Math.abs(err / x)).toPrecision(3) + "%)" : "";
        const nb = neighbours(bits, f);
        table.appendChild(el("tr", { "data-format": key }, [
          el("th", { scope: "row", text: f.name }), el("td", { class: "llmb-value", text: fmt(v) }), bitCell,
          el("td", { class: "llmb-kind", text: classify(bits, f) }),
          el("td", { text: err === null ? "-" : fmt(err) + rel }),
          el("td", { text: fmt(nb.below) }), el("td", { text: fmt(nb.above) })]));
      }
      const s = parse(scale.value);
      qtable.innerHTML = "";
      qtable.appendChild(el("caption", { text: "Through a quantizer with this scale" }));
      qtable.appendChild(el("tr", {}, ["quantizer", "code", "dequantized value", "error"].map(
        (t) => el("th", { scope: "col", text: t }))));
      for (const [name, q] of [["absmax int8", quantizeInt8], ["nf4", quantizeNf4]]) {
        const ok = Number.isFinite(x) && Number.isFinite(s) && s > 0;
        const r = ok ? q(x, s) : null;
        qtable.appendChild(el("tr", { "data-quantizer": name }, [el("th", { scope: "row", text: name }),
          el("td", { class: "llmb-code", text: r ? String(r.code) : "-" }),
          el("td", { class: "llmb-value", text: r ? fmt(r.value) : "needs a finite value and a scale above 0" }),
          el("td", { text: r ? fmt(r.value - x) : "-" })]));
      }
      const a = Math.abs(x);
      if (Number.isFinite(a) && a > 0) slider.value = String(Math.max(-16, Math.min(16, Math.log2(a))));
      renderBlock();
    }

    function renderBlock() {
      mxTable.innerHTML = "";
      mxMessage.textContent = "";
      const values = block.value.split(/[\s,;]+/).filter((t) => t !== "").map(parse);
      let problem = null;
      if (values.length === 0) problem = "type at least one value";
      else if (values.length > MX_BLOCK) problem = "at most " + MX_BLOCK + " values share one scale";
      else if (!values.every(Number.isFinite)) problem = "every value must be a finite number";
      if (problem) {
        mxMessage.textContent = "Block: " + problem + ".";
        return;
      }
      const r = quantizeMxBlock(values, mxFormat.value);
      const scaleBits = r.scaleCode.toString(2).padStart(8, "0");
      mxTable.appendChild(el("caption", { "data-mx-scale": String(r.scaleCode), text: "Shared scale 2^" +
        (r.scaleCode - 127) + " = " + fmt(r.scale) + " (E8M0 code " + r.scaleCode + ", bits " + scaleBits + ")" }));
      mxTable.appendChild(el("tr", {}, ["#", "value", "element bits", "element", "stored (element × scale)", "error"]
        .map((t) => el("th", { scope: "col", text: t }))));
      r.elements.forEach((e, i) => {
        const p = fields(e.code, r.format);
        mxTable.appendChild(el("tr", { "data-mx-element": String(i) }, [el("td", { text: String(i) }),
          el("td", { text: fmt(values[i]) }),
          el("td", { class: "llmb-bits", text: p.sign + " " + p.exponent + " " + p.mantissa }),
          el("td", { class: "llmb-code", text: fmt(e.element) }), el("td", { class: "llmb-value", text: fmt(e.stored) }),
          el("td", { text: fmt(e.stored - values[i]) })]));
      });
    }
    block.addEventListener("input", renderBlock);
    mxFormat.addEventListener("change", renderBlock);

    input.addEventListener("input", render);
    scale.addEventListener("input", render);
    slider.addEventListener("input", () => {
      const x = parse(input.value);
      const sign = x < 0 ? -1 : 1;
      input.value = fmt(sign * Number(pow2(Number(slider.value)).toPrecision(4)));
      render();
    });
    render();
  }

  const PART_LABELS = { weights: "weights", kv_cache: "KV cache", activations: "activations", gradients: "gradients",
    master_weights: "fp32 master weights", optimizer: "optimizer states", adapter: "LoRA adapter",
    autocast_cache: "autocast's bf16 weight copies", logits: "logits the loop keeps",
    previous_logits: "the previous step's logits",
    logits_fp32: "the loss's fp32 copy of the logits", loss_backward: "the loss's backward (fp32 gradients)",
    backward_workspace: "the working layer's transients", forward_workspace: "the last layer's forward transients",
    dequantized_weight: "one projection dequantized",
    embedding_gradient: "tied embedding's own gradient", optimizer_temporaries: "optimizer temporaries (foreach)",
    gradient_buckets: "DDP's gradient buckets", gathered_weights: "FSDP's gathered weights",
    reduce_scatter_buffers: "FSDP's reduce-scatter buffers" };
  const PART_COLORS = { weights: "#0072B2", kv_cache: "#E69F00", activations: "#009E73", gradients: "#CC79A7",
    master_weights: "#56B4E9", optimizer: "#D55E00", adapter: "#F0E442", autocast_cache: "#999999",
    logits: "#882255", previous_logits: "#CC6677", logits_fp32: "#AA4499", loss_backward: "#332288", backward_workspace: "#117733",
    forward_workspace: "#88CCEE",
    dequantized_weight: "#DDCC77", embedding_gradient: "#44AA99", optimizer_temporaries: "#661100",
    gradient_buckets: "#6699CC", gathered_weights: "#004488", reduce_scatter_buffers: "#BB5566" };

  function memoryCalculator(host, presets, gpuData) {
    const id = "mc" + Math.random().toString(36).slice(2, 8);
    const fieldsSpec = [["hidden_size", "hidden size"], ["num_hidden_layers", "layers"], ["vocab_size", "vocabulary"],
      ["num_attention_heads", "attention heads"], ["num_key_value_heads", "KV heads"],
      ["intermediate_size", "MLP size"]];
    const controls = el("div", { class: "llmb-grid" });
    const preset = el("select", { id: id + "-preset" });
    for (const name of Object.keys(presets)) preset.appendChild(el("option", { value: name, text: name }));
    preset.appendChild(el("option", { value: "custom", text: "custom" }));
    controls.appendChild(el("label", { for: id + "-preset", text: "Preset" }));
    controls.appendChild(preset);
    const inputs = {};
    for (const [key, label] of fieldsSpec) {
      inputs[key] = el("input", { type: "number", min: "1", step: "1", id: id + "-" + key, "data-field": key });
      controls.appendChild(el("label", { for: id + "-" + key, text: label }));
      controls.appendChild(inputs[key]);
    }
    const tie = el("input", { type: "checkbox", id: id + "-tie", "data-field": "tie_word_embeddings" });
    controls.appendChild(el("label", { for: id + "-tie", text: "tied embeddings" }));
    controls.appendChild(tie);
    function select(key, label, options) {
      const s = el("select", { id: id + "-" + key, "data-field": key });
      for (const [v, t] of options) s.appendChild(el("option", { value: v, text: t }));
      controls.appendChild(el("label", { for: id + "-" + key, text: label }));
      controls.appendChild(s);
      return s;
    }
    const recipe = select("recipe", "job", [["inference", "inference"],
      ["full", "full fine-tune, torch.autocast (fp32 weights, AdamW)"],
      ["full-fp32", "full fine-tune in plain fp32 (AdamW)"],
      ["full-bf16", "full fine-tune, model in bf16 (AdamW in bf16)"],
      ["full-master", "full fine-tune, 16-bit + fp32 master (DeepSpeed, Apex)"],
      ["lora", "LoRA"], ["qlora", "QLoRA (nf4 base)"]]);
    const dtype = select("dtype", "dtype", [["bfloat16", "bf16"], ["float16", "fp16"], ["float32", "fp32"]]);
    const attention = select("attention", "attention (training)", [["sdpa", "SDPA / FlashAttention"],
      ["eager", "eager (keeps the s x s scores)"]]);
    const optimizer = select("optimizer", "optimizer (training)", [["adamw", "AdamW (torch)"],
      ["adamw8bit", "AdamW8bit (bitsandbytes)"], ["sgd", "SGD with momentum"]]);
    const quant = select("quantization", "quantization (inference)", [["", "none"], ["int8", "int8 (LLM.int8)"],
      ["nf4", "nf4"]]);
    const dq = el("input", { type: "checkbox", id: id + "-dq", "data-field": "double_quant" });
    controls.appendChild(el("label", { for: id + "-dq", text: "double quantization (4-bit)" }));
    controls.appendChild(dq);
    const num = (key, label, value) => {
      const i = el("input", { type: "number", min: "1", step: "1", id: id + "-" + key, value: String(value), "data-field": key });
      controls.appendChild(el("label", { for: id + "-" + key, text: label }));
      controls.appendChild(i);
      return i;
    };
    const batch = num("batch", "batch", 1);
    const context = num("context", "context (tokens)", 4096);
    const rank = num("lora_rank", "LoRA rank", 16);
    const ckpt = el("input", { type: "checkbox", id: id + "-ckpt", "data-field": "checkpointing" });
    controls.appendChild(el("label", { for: id + "-ckpt", text: "gradient checkpointing" }));
    controls.appendChild(ckpt);
    const gpus = num("gpus", "GPUs (training, data-parallel)", 1);
    const sharding = select("sharding", "sharding (2+ GPUs)", [["ddp", "DDP (full replicas)"],
      ["zero1", "ZeRO-1 (optimizer states)"], ["zero2", "ZeRO-2 / FSDP2 without resharding"],
      ["zero3", "ZeRO-3 / FSDP2 (everything)"]]);
    const offload = el("input", { type: "checkbox", id: id + "-offload", "data-field": "offload" });
    controls.appendChild(el("label", { for: id + "-offload", text: "CPU offload (ZeRO-2/3)" }));
    controls.appendChild(offload);
    host.appendChild(controls);
    const out = el("div", { class: "llmb-output", "aria-live": "polite" });
    host.appendChild(out);

    function loadPreset() {
      const p = presets[preset.value];
      if (!p) return;
      for (const [key] of fieldsSpec) inputs[key].value = String(p[key]);
      tie.checked = !!p.tie_word_embeddings;
    }

    function config() {
      const c = {};
      for (const [key] of fieldsSpec) c[key] = Number(inputs[key].value);
      c.tie_word_embeddings = tie.checked;
      return c;
    }

    function render() {
      const c = config();
      out.innerHTML = "";
      const bad = fieldsSpec.filter(([k]) => !(Number.isInteger(c[k]) && c[k] > 0)).map(([, l]) => l);
      if (!bad.length && c.hidden_size % c.num_attention_heads) bad.push("hidden size divisible by heads");
      if (!bad.length && c.num_attention_heads % c.num_key_value_heads) bad.push("heads divisible by KV heads");
      if (bad.length) { out.appendChild(el("p", { class: "llmb-error", text: "Check: " + bad.join(", ") })); return; }
      const job = { recipe: recipe.value, dtype: dtype.value, quantization: quant.value || null,
        double_quant: dq.checked, batch: Number(batch.value), context: Number(context.value),
        checkpointing: ckpt.checked, lora_rank: Number(rank.value), optimizer: optimizer.value,
        attention: attention.value };
      const nGpus = Number(gpus.value);
      const parallel = recipe.value !== "inference" && (nGpus > 1 || offload.checked);
      if (parallel && !(Number.isInteger(nGpus) && nGpus >= 1)) {
        out.appendChild(el("p", { class: "llmb-error", text: "Check: GPUs, a whole number from 1" })); return;
      }
      if (parallel && offload.checked && sharding.value !== "zero2" && sharding.value !== "zero3") {
        out.appendChild(el("p", { class: "llmb-error", text: "Check: CPU offload needs ZeRO-2 or ZeRO-3" })); return;
      }
      const phases = parallel ? shardedPhases(c, Object.assign({ gpus: nGpus, sharding: sharding.value,
        offload: offload.checked }, job)) : stepPhases(c, job);
      const [moment, live] = largest(phases);
      const GiB = Math.pow(2, 30);
      const sum = (p) => Object.values(p).reduce((s, v) => s + v, 0);
      const total = sum(live);
      out.appendChild(el("p", { class: "llmb-total", "data-total-bytes": String(total), "data-moment": moment,
        text: (parameters(c) / 1e9).toFixed(2) + "B parameters; peak " + (total / GiB).toFixed(2) + " GiB" +
          (parallel ? " on each of " + nGpus + " GPUs (" + sharding.value + (offload.checked ? ", offload" : "") + ")" : "") +
          ", during the " + moment + (recipe.value === "inference" ? "" : " (the parts alive then, below)") }));
      const maxGiB = Math.max(total / GiB, 16) * 1.08;
      const W = 640; const H = 64; const scaleX = (g) => 10 + (g / maxGiB) * (W - 20);
      const ns = "http://www.w3.org/2000/svg";
      const svg = document.createElementNS(ns, "svg");
      svg.setAttribute("viewBox", `0 0 ${W} ${H + 38}`);
      svg.setAttribute("role", "img");
      svg.setAttribute("class", "llmb-bar");
      svg.setAttribute("aria-label", "Stacked bar of memory by part at the peak, " + (total / GiB).toFixed(2) +
        " GiB, with lines at the usable memory of common GPUs");
      let x = 0;
      for (const [k, v] of Object.entries(live)) {
        const r = document.createElementNS(ns, "rect");
        r.setAttribute("x", String(scaleX(x / GiB))); r.setAttribute("y", "8");
        r.setAttribute("width", String(Math.max(0, scaleX((x + v) / GiB) - scaleX(x / GiB))));
        r.setAttribute("height", String(H - 24)); r.setAttribute("fill", PART_COLORS[k]);
        r.setAttribute("data-part", k);
        svg.appendChild(r);
        x += v;
      }
      let lastLabel = -Infinity;
      for (const gpu of gpuData.gpus) {
        const g = gpu.usable_bytes / GiB;
        if (g > maxGiB) continue;
        const l = document.createElementNS(ns, "line");
        l.setAttribute("x1", String(scaleX(g))); l.setAttribute("x2", String(scaleX(g)));
        l.setAttribute("y1", "2"); l.setAttribute("y2", String(H - 10)); l.setAttribute("stroke", "#444");
        l.setAttribute("stroke-dasharray", "3 3");
        const tip = document.createElementNS(ns, "title");
        tip.textContent = gpu.name + ": " + g.toFixed(1) + " GiB usable of " + gpu.total_mib + " MiB";
        l.appendChild(tip);
        svg.appendChild(l);
        if (scaleX(g) - lastLabel < 44) continue; // too close to the last label to read
        lastLabel = scaleX(g);
        const t = document.createElementNS(ns, "text");
        t.setAttribute("x", String(scaleX(g))); t.setAttribute("y", String(H + 4)); t.setAttribute("font-size", "10");
        t.setAttribute("text-anchor", "middle"); t.textContent = gpu.name.split(" ")[0];
        svg.appendChild(t);
      }
      const axis = document.createElementNS(ns, "text");
      axis.setAttribute("x", String(W / 2)); axis.setAttribute("y", String(H + 30)); axis.setAttribute("font-size", "11");
      axis.setAttribute("text-anchor", "middle"); axis.textContent = "memory (GiB)";
      svg.appendChild(axis);
      out.appendChild(svg);
      if (parallel && offload.checked) {
        const cpu = sum(offloadedBytes(c, Object.assign({ gpus: nGpus, sharding: sharding.value }, job)));
        out.appendChild(el("p", { class: "llmb-offload", "data-offload-bytes": String(cpu),
          text: "CPU memory for the offloaded shards: " + (cpu / GiB).toFixed(2) + " GiB for each process, " +
            (nGpus * cpu / GiB).toFixed(1) + " GiB for all " + nGpus + " together" +
            " (weights, gradients and optimizer states; the weights and gradients pinned)" }));
      }
      const t = el("table", { class: "llmb-table" });
      t.appendChild(el("tr", {}, ["part", "GiB", "bytes"].map((h) => el("th", { scope: "col", text: h }))));
      for (const [k, v] of Object.entries(live)) {
        const sw = el("span", { class: "llmb-swatch", "aria-hidden": "true" });
        sw.style.background = PART_COLORS[k];
        const th = el("th", { scope: "row" }, [sw]);
        th.appendChild(document.createTextNode(" " + PART_LABELS[k]));
        t.appendChild(el("tr", { "data-part": k }, [th, el("td", { text: (v / GiB).toFixed(3) }),
          el("td", { class: "llmb-bytes", text: v.toLocaleString("en-US") })]));
      }
      out.appendChild(t);
      if (recipe.value !== "inference") { // every moment of the step, the peak marked
        const m = el("table", { class: "llmb-table llmb-moments" });
        m.appendChild(el("tr", {}, ["moment of the step", "GiB"].map((h) => el("th", { scope: "col", text: h }))));
        for (const [name, p] of Object.entries(phases)) {
          m.appendChild(el("tr", { "data-moment": name, class: name === moment ? "llmb-peak" : "" },
            [el("th", { scope: "row", text: name + (name === moment ? " (peak)" : "") }),
              el("td", { text: (sum(p) / GiB).toFixed(3) })]));
        }
        out.appendChild(m);
        out.appendChild(el("p", { class: "llmb-note", text: "The loop assumed: out = model(**batch); " +
          "out.loss.backward(); optimizer.step(); optimizer.zero_grad(), one batch per step (no gradient " +
          "accumulation), AdamW in its default foreach form. On a T4, or computing in fp32, a model with " +
          "grouped KV heads may get SDPA's math kernel, which keeps the scores: choose eager attention then." }));
      }
      const fits = fitsOn(total, gpuData);
      const rule = "usable memory = nvidia-smi's total less " + (gpuData.cuda_reserve_bytes / GiB).toFixed(0) +
        " GiB for the driver and CUDA context, less " + (gpuData.allocator_slack * 100).toFixed(0) +
        "% for the allocator";
      out.appendChild(el("p", { class: "llmb-fits", text: (fits.length ? "Fits on: " + fits.join(", ") :
        "Fits on none of these " + (parallel ? "GPUs" : "single GPUs")) + (parallel ? ", " + nGpus + " of them" : "") +
        " (" + rule + ")." }));
    }

    preset.addEventListener("change", () => { loadPreset(); render(); });
    controls.addEventListener("input", (e) => {
      if (e.target.dataset.field && fieldsSpec.some(([k]) => k === e.target.dataset.field) ||
          e.target === tie) preset.value = "custom";
      render();
    });
    controls.addEventListener("change", render);
    preset.value = host.dataset.preset && presets[host.dataset.preset] ? host.dataset.preset : Object.keys(presets)[0];
    loadPreset();
    render();
  }

  function mountAll(doc) {
    doc.querySelectorAll("[data-llmb-widget]").forEach((h) => {
      if (h.dataset.mounted) return;
      h.dataset.mounted = "1";
      h.classList.add("llmb-widget");
      if (h.dataset.llmbWidget === "float-explorer") floatExplorer(h);
      else if (h.dataset.llmbWidget === "memory-calculator") {
        if (root.LLMBookPresets && root.LLMBookGPUs) memoryCalculator(h, root.LLMBookPresets, root.LLMBookGPUs);
        else h.textContent = "The calculator's presets (presets.js) did not load; rebuild the site.";
      }
    });
  }

  api.floatExplorer = floatExplorer;
  api.memoryCalculator = memoryCalculator;
  api.mountAll = mountAll;

  if (typeof module !== "undefined" && module.exports) module.exports = api;
  if (typeof window !== "undefined") {
    window.LLMBookWidgets = api;
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => mountAll(document));
    else mountAll(document);
  }
})(this);
