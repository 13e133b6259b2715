// The widgets' arithmetic against test vectors generated from Python
// (scripts/make_widget_data.py). Run: node --test tests/js/
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const fs = require("node:fs");

const W = require(path.join(__dirname, "..", "..", "book", "_static", "widgets", "llmbook-widgets.js"));
const V = JSON.parse(fs.readFileSync(path.join(__dirname, "vectors.json"), "utf8"));

const num = (v) => (v === "nan" ? NaN : v === "inf" ? Infinity : v === "-inf" ? -Infinity : v);
const same = (a, b) => (Number.isNaN(a) && Number.isNaN(b)) || Object.is(a, b) || (a === b && a !== 0);

test("vectors cover every format and quantizer", () => {
  assert.ok(V.floats.length > 300);
  assert.deepEqual(Object.keys(V.floats[0].formats).sort(), Object.keys(W.FORMATS).sort());
  assert.ok(V.quantizers.length > 100 && V.memory.length > 100);
});

test("encode gives Python's bit pattern, decode its value, for every value and format", () => {
  const failures = [];
  for (const row of V.floats) {
    const x = num(row.x);
    for (const [key, want] of Object.entries(row.formats)) {
      const f = W.FORMATS[key];
      const bits = W.encode(x, f);
      if (bits !== want.bits) failures.push(`${key} encode(${row.x}) = ${bits}, Python ${want.bits}`);
      if (want.bits === null) continue; // no code for x in this format (a NaN in fp4, 0 in e8m0)
      const value = W.decode(want.bits, f);
      if (!same(value, num(want.value))) failures.push(`${key} decode(${want.bits}) = ${value}, Python ${want.value}`);
    }
  }
  assert.deepEqual(failures, []);
});

test("neighbours match the formats' value tables", () => {
  const failures = [];
  for (const row of V.floats) {
    for (const [key, want] of Object.entries(row.formats)) {
      const nb = W.neighbours(want.bits, W.FORMATS[key]);
      // the value next to the smallest subnormal is zero, whatever its sign
      if (nb.below !== want.below) {
        failures.push(`${key} below ${want.value}: ${nb.below} vs ${want.below}`);
      }
      if (nb.above !== want.above) {
        failures.push(`${key} above ${want.value}: ${nb.above} vs ${want.above}`);
      }
    }
  }
  assert.deepEqual(failures, []);
});

test("known bit patterns", () => {
  assert.equal(W.encode(1, W.FORMATS.fp32), 0x3f800000);
  assert.equal(W.encode(65504, W.FORMATS.fp16), 0x7bff);
  assert.equal(W.encode(65520, W.FORMATS.fp16), 0x7c00); // rounds to infinity
  assert.equal(W.encode(448, W.FORMATS.e4m3), 0x7e);
  assert.ok(Number.isNaN(W.decode(W.encode(500, W.FORMATS.e4m3), W.FORMATS.e4m3))); // no infinity in e4m3fn
  assert.equal(W.classify(1, W.FORMATS.fp16), "subnormal");
  assert.equal(W.decode(0b0111, W.FORMATS.e2m1), 6); // fp4's all-ones is a number, not NaN
  assert.equal(W.encode(7, W.FORMATS.e2m1), 0b0111); // saturates
  assert.equal(W.encode(NaN, W.FORMATS.e2m1), null);
  assert.equal(W.encode(1, W.FORMATS.e8m0), 127);
  assert.equal(W.encode(3, W.FORMATS.e8m0), 129); // a tie goes up, to 4
  assert.ok(Number.isNaN(W.decode(255, W.FORMATS.e8m0)));
  assert.equal(W.encode(-1, W.FORMATS.e8m0), null);
  assert.deepEqual(W.fields(127, W.FORMATS.e8m0), { sign: "", exponent: "01111111", mantissa: "" });
});

test("an MX block: the scale and every element as the chapter's quantizer (and torchao)", () => {
  assert.ok(V.mx.length >= 5 * 15);
  assert.deepEqual([...new Set(V.mx.map((r) => r.format))].sort(), Object.keys(W.MX_FORMATS).sort());
  const failures = [];
  for (const row of V.mx) {
    const got = W.quantizeMxBlock(row.values, row.format);
    if (got.scaleCode !== row.scale_code) failures.push(`${row.format} scale ${got.scaleCode} vs ${row.scale_code}`);
    got.elements.forEach((e, i) => {
      if (e.code !== row.codes[i]) failures.push(`${row.format} [${i}] ${row.values[i]}: code ${e.code} vs ${row.codes[i]}`);
      if (!Object.is(e.element, row.elements[i])) failures.push(`${row.format} [${i}] element ${e.element} vs ${row.elements[i]}`);
      if (!Object.is(e.stored, row.stored[i])) failures.push(`${row.format} [${i}] stored ${e.stored} vs ${row.stored[i]}`);
    });
  }
  assert.deepEqual(failures.slice(0, 10), []);
  assert.throws(() => W.quantizeMxBlock([1], "MXFP3"), /unknown MX format/);
});

test("int8 and nf4 match numpy and bitsandbytes", () => {
  const failures = [];
  for (const c of V.quantizers) {
    const i8 = W.quantizeInt8(c.x, c.absmax);
    const n4 = W.quantizeNf4(c.x, c.absmax);
    if (i8.code !== c.int8 || Math.abs(i8.value - c.int8_value) > 1e-12 * Math.abs(c.absmax)) failures.push(`int8 ${c.x}/${c.absmax}: ${i8.code} vs ${c.int8}`);
    if (n4.code !== c.nf4 || Math.abs(n4.value - c.nf4_value) > 1e-12 * Math.abs(c.absmax)) failures.push(`nf4 ${c.x}/${c.absmax}: ${n4.code} vs ${c.nf4}`);
  }
  assert.deepEqual(failures, []);
});

test("memory breakdowns equal llmbook.memory.breakdown to the byte", () => {
  const failures = [];
  for (const row of V.memory) {
    if (W.parameters(row.config) !== row.parameters) failures.push(`${row.name} parameters ${W.parameters(row.config)} vs ${row.parameters}`);
    const got = W.breakdown(row.config, row.options);
    assert.deepEqual(Object.keys(got).sort(), Object.keys(row.parts).sort());
    for (const [k, v] of Object.entries(row.parts)) {
      if (got[k] !== v) failures.push(`${row.name} ${JSON.stringify(row.options)} ${k}: ${got[k]} vs ${v}`);
    }
  }
  assert.deepEqual(failures.slice(0, 10), []);
});

test("each moment of a step and the peak equal llmbook.memory.step_phases and peak", () => {
  const failures = [];
  for (const row of V.memory) {
    const got = W.stepPhases(row.config, row.options);
    if (JSON.stringify(Object.keys(got)) !== JSON.stringify(Object.keys(row.phases))) {
      failures.push(`${row.name} moments ${Object.keys(got)} vs ${Object.keys(row.phases)}`);
      continue;
    }
    for (const [moment, parts] of Object.entries(row.phases)) {
      assert.deepEqual(Object.keys(got[moment]).sort(), Object.keys(parts).sort(), `${row.name} ${moment}`);
      for (const [k, v] of Object.entries(parts)) {
        if (got[moment][k] !== v) failures.push(`${row.name} ${JSON.stringify(row.options)} ${moment} ${k}: ${got[moment][k]} vs ${v}`);
      }
    }
    const [moment, parts] = W.peak(row.config, row.options);
    if (moment !== row.peak[0] || JSON.stringify(parts) !== JSON.stringify(row.peak[1])) {
      failures.push(`${row.name} ${JSON.stringify(row.options)} peak ${moment} vs ${row.peak[0]}`);
    }
  }
  assert.ok(V.memory.some((r) => r.peak[0] === "optimizer step") && V.memory.some((r) => r.peak[0] === "loss backward"));
  assert.deepEqual(failures.slice(0, 10), []);
});

test("mixture-of-experts and hybrid presets: inference equals Python's, training is refused", () => {
  const presets = (() => { // the page's file, as a browser would run it
    const window = {}; new Function("window", fs.readFileSync(path.join(__dirname, "..", "..", "book",
      "_static", "widgets", "presets.js"), "utf8"))(window); return window.LLMBookModelPresets; })();
  assert.deepEqual(Object.keys(presets).sort(), [...new Set(V.model_presets.map((r) => r.name))].sort());
  const failures = [];
  for (const row of V.model_presets) {
    assert.deepEqual(presets[row.name], row.config); // the page's preset is the tested one
    const got = W.breakdown(row.config, row.options);
    for (const [k, v] of Object.entries(row.parts)) {
      if (got[k] !== v) failures.push(`${row.name} ${JSON.stringify(row.options)} ${k}: ${got[k]} vs ${v}`);
    }
    const [moment, parts] = W.peak(row.config, row.options);
    if (moment !== row.peak[0] || JSON.stringify(parts) !== JSON.stringify(row.peak[1])) {
      failures.push(`${row.name} ${JSON.stringify(row.options)} peak ${moment} vs ${row.peak[0]}`);
    }
    if (W.parameters(row.config) !== row.parameters) failures.push(`${row.name} parameters`);
  }
  assert.deepEqual(failures.slice(0, 10), []);
  assert.ok(V.model_presets.some((r) => r.config.state_bytes)); // hybrids among them
  for (const c of Object.values(presets)) {
    assert.throws(() => W.stepPhases(c, { recipe: "lora" }), /Llama-shaped models here, not/);
  }
});

test("a pasted config.json fills the shape, or says in one sentence why not", () => {
  const llama = Object.assign({ model_type: "llama", rope_theta: 500000 }, V.memory.find((r) => r.name === "Llama-3-8B").config);
  const shape = W.readConfig(JSON.stringify(llama));
  for (const key of ["hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads", "num_key_value_heads",
    "intermediate_size", "tie_word_embeddings"]) assert.equal(shape[key], llama[key], key);
  const refusals = [["{", /not JSON/], ["[1]", /JSON object/], ["{}", /No model_type/],
    ['{"model_type": "gpt_oss"}', /command line/], ['{"model_type": "mistral", "sliding_window": 4096}', /command line/],
    [JSON.stringify(Object.assign({}, llama, { hidden_size: 0 })), /whole hidden_size/],
    [JSON.stringify(Object.assign({}, llama, { head_dim: 96 })), /head_dim/]];
  for (const [text, why] of refusals) {
    assert.throws(() => W.readConfig(text), (e) => why.test(e.message) && !e.message.includes("\n"), text);
  }
});

test("the GPUs a job fits on equal llmbook.memory.fits_on", () => {
  const failures = [];
  for (const row of V.memory) {
    const total = Object.values(row.peak[1]).reduce((a, b) => a + b, 0);
    const got = W.fitsOn(total, V.gpus);
    if (JSON.stringify(got) !== JSON.stringify(row.fits_on)) failures.push(`${row.name}: ${got} vs ${row.fits_on}`);
  }
  assert.ok(V.gpus.gpus.length >= 10);
  assert.deepEqual(failures.slice(0, 10), []);
});

test("a GPU's share of a data-parallel job equals llmbook.memory.sharded_phases", () => {
  const failures = [];
  for (const row of V.sharded) {
    const got = W.shardedPhases(row.config, row.options);
    assert.deepEqual(Object.keys(got), Object.keys(row.phases), `${row.name} ${JSON.stringify(row.options)}`);
    for (const [moment, parts] of Object.entries(row.phases)) {
      assert.deepEqual(Object.keys(got[moment]).sort(), Object.keys(parts).sort(), `${row.name} ${moment}`);
      for (const [k, v] of Object.entries(parts)) {
        if (got[moment][k] !== v) failures.push(`${row.name} ${JSON.stringify(row.options)} ${moment} ${k}: ${got[moment][k]} vs ${v}`);
      }
    }
  }
  assert.ok(V.sharded.length > 100);
  assert.ok(new Set(V.sharded.map((r) => W.largest(r.phases)[0])).size >= 2);
  assert.deepEqual(failures.slice(0, 10), []);
  const c = V.sharded[0].config;
  assert.throws(() => W.shardedPhases(c, { sharding: "zero4" }), /unknown sharding/);
  assert.throws(() => W.shardedPhases(c, { sharding: "ddp", offload: true }), /offload/);
  assert.throws(() => W.shardedPhases(c, { recipe: "inference" }), /training/);
});

test("CPU offload's host memory equals llmbook.memory.offloaded_bytes", () => {
  const rows = V.sharded.filter((r) => r.options.offload);
  const failures = [];
  for (const row of rows) {
    const got = W.offloadedBytes(row.config, row.options);
    if (JSON.stringify(got) !== JSON.stringify(row.offloaded)) {
      failures.push(`${row.name} ${JSON.stringify(row.options)}: ${JSON.stringify(got)} vs ${JSON.stringify(row.offloaded)}`);
    }
    if (row.options.recipe !== "full-master") { // torch's default on a CPU: the for-loop
      const loop = W.offloadedBytes(row.config, Object.assign({}, row.options, { optimizer_impl: "for-loop" }));
      assert.deepEqual(got, loop);
    }
  }
  assert.ok(rows.length > 50);
  assert.deepEqual(failures.slice(0, 5), []);
  assert.throws(() => W.offloadedBytes(rows[0].config, { sharding: "ddp" }), /offload/);
});

test("bad options fail with a message", () => {
  assert.throws(() => W.breakdown(V.memory[0].config, { recipe: "pretrain" }), /unknown recipe/);
  assert.throws(() => W.breakdown(V.memory[0].config, { dtype: "float8" }), /unknown dtype/);
  assert.throws(() => W.breakdown(V.memory[0].config, { recipe: "full", optimizer: "lion" }), /unknown optimizer/);
  assert.throws(() => W.breakdown(V.memory[0].config, { recipe: "full", attention: "flex" }), /unknown attention/);
  assert.throws(() => W.stepPhases(V.memory[0].config, { recipe: "full", optimizer_impl: "vectorised" }),
    /unknown optimizer_impl/);
  assert.throws(() => W.shardedPhases(V.memory[0].config, { sharding: "zero1", gpus: 2, rank: 2 }), /rank/);
  const sliding = Object.assign({}, V.memory[0].config, { sliding_window: 64 });
  assert.throws(() => W.kvCacheBytes(sliding, 1, 100, 2, "all", "int4"), /full attention/);
  assert.ok(W.kvCacheBytes(sliding, 1, 100, 2, "all", "fp8") > 0);
});

test("every part the memory model names has a label and a colour on the page", () => {
  const names = new Set();
  for (const row of V.memory) for (const parts of Object.values(row.phases)) Object.keys(parts).forEach((k) => names.add(k));
  for (const row of V.sharded) for (const parts of Object.values(row.phases)) Object.keys(parts).forEach((k) => names.add(k));
  for (const row of V.sharded) Object.keys(row.offloaded || {}).forEach((k) => names.add(k));
  assert.ok(names.has("layer_gradients") && names.has("root_gradients"));
  const colours = new Set();
  for (const k of names) {
    assert.ok(W.PART_LABELS[k], `no label for ${k}`);
    assert.ok(W.PART_COLORS[k], `no colour for ${k}`);
    colours.add(W.PART_COLORS[k]);
  }
  assert.equal(colours.size, names.size, "two parts share a colour");
});

test("vLLM's budget and the requests that fit equal llmbook.memory.serving's", () => {
  assert.ok(V.serving.length > 100);
  const s = V.gpus.serving;
  const failures = [];
  for (const row of V.serving) {
    const gpu = V.gpus.gpus.find((g) => g.name === row.gpu);
    const got = W.servingBudget(row.config, gpu, s, row.options);
    for (const [k, want] of Object.entries(row.budget)) {
      if (k !== "cuda_graphs" && got[k] !== want) failures.push(`${row.name} ${row.gpu} ${k}: ${got[k]} vs ${want}`);
    }
    if (!row.fit) { assert.equal(got.blocks, 0); continue; }
    const fit = W.requestsThatFit(row.config, got, row.prompt, row.answer, row.shared_prefix);
    for (const k of ["requests", "blocks_each", "shared_blocks", "limit"]) {
      if (fit[k] !== row.fit[k]) failures.push(`${row.name} ${row.gpu} ${k}: ${fit[k]} vs ${row.fit[k]}`);
    }
    if (Math.abs(fit.max_concurrency - row.fit.max_concurrency) > 1e-9 * row.fit.max_concurrency) {
      failures.push(`${row.name} ${row.gpu} concurrency ${fit.max_concurrency} vs ${row.fit.max_concurrency}`);
    }
  }
  assert.deepEqual(failures.slice(0, 5), []);
  const names = new Set(V.serving.map((r) => r.name));
  assert.ok(names.has("gpt-oss-20b") && names.has("DeepSeek-V3") && names.has("Llama-3-8B"));
  assert.ok(V.serving.some((r) => r.fit && r.fit.limit === "max_num_seqs"));
  assert.ok(V.serving.some((r) => r.fit && r.fit.shared_blocks > 0));
  assert.ok(V.serving.some((r) => !r.fit)); // a model whose weights leave no cache
});

test("serving refuses what vLLM's budget does not model, in one sentence", () => {
  const chunked = Object.assign({}, V.serving[0].config, { attention_chunk_size: 8192 });
  assert.throws(() => W.cacheGroups(chunked), /chunked_attention layers: vLLM's budget/);
  const oss = V.serving.find((r) => r.name === "gpt-oss-20b");
  const gpu = V.gpus.gpus.find((g) => g.name === "H200");
  const b = W.servingBudget(oss.config, gpu, V.gpus.serving, Object.assign({}, oss.options, { quantization: null,
    width: 2, double_quant: false }));
  assert.throws(() => W.requestsThatFit(oss.config, b, 1000, 100, 500), /full attention only/);
});

test("the roofline's bounds equal llmbook.memory.roofline's", () => {
  assert.ok(V.roofline.length >= 50);
  const close = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
  const failures = [];
  for (const row of V.roofline) {
    const o = row.options;
    const gpu = V.gpus.gpus.find((g) => g.name === o.gpu);
    assert.equal(W.computeFor(gpu, o.width === 4 ? "float32" : "bfloat16", o.quantization), o.compute);
    const got = W.roofline(row.config, gpu, o.compute, o.batch, o.prompt, o.context, o.width, o.quantization,
      o.kv_bytes, o.kv_quant, o.double_quant);
    for (const [k, want] of Object.entries(row.bounds)) {
      const ok = typeof want === "number" ? close(got[k], want) : got[k] === want;
      if (!ok) failures.push(`${row.name} ${JSON.stringify(o)} ${k}: ${got[k]} vs ${want}`);
    }
  }
  assert.deepEqual(failures.slice(0, 5), []);
  assert.ok(V.roofline.some((r) => r.bounds.step_bound === "compute"));
  assert.ok(V.roofline.some((r) => r.bounds.critical_batch === null));
  assert.throws(() => W.roofline(V.roofline[0].config, { name: "x", peak: {}, bandwidth: 1 }, "bf16", 1, 1),
    /no bf16 peak/);
});
