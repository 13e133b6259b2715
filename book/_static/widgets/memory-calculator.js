/*
 * The memory calculator's page: the form, the bar against GPU sizes, the tables.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { computeFor, el, fitsOn, largest, offloadedBytes, parameters, requestsThatFit, roofline, servingBudget,
    shardedPhases, stepPhases } = W;

  const PART_LABELS = { weights: "weights", kv_cache: "KV cache", activations: "activations", gradients: "gradients",
    master_weights: "fp32 master weights", optimizer: "optimizer states", adapter: "LoRA adapter",
    autocast_cache: "autocast's bf16 weight copies", logits: "logits the loop keeps",
    previous_logits: "the previous step's logits",
    logits_fp32: "the loss's fp32 copy of the logits", loss_backward: "the loss's backward (fp32 gradients)",
    backward_workspace: "the working layer's transients", forward_workspace: "the last layer's forward transients",
    dequantized_weight: "one projection dequantized",
    embedding_gradient: "tied embedding's own gradient", optimizer_temporaries: "the optimizer step's temporaries",
    gradient_buckets: "DDP's gradient buckets", gathered_weights: "FSDP's gathered weights",
    reduce_scatter_buffers: "FSDP's reduce-scatter input", layer_gradients: "the layer's whole gradients (FSDP)",
    root_gradients: "embeddings' and head's whole gradients (FSDP)",
    output_cache: "the KV cache the loop's output keeps", previous_cache: "the previous step's KV cache" };
  const PART_COLORS = { weights: "#0072B2", kv_cache: "#E69F00", activations: "#009E73", gradients: "#CC79A7",
    master_weights: "#56B4E9", optimizer: "#D55E00", adapter: "#F0E442", autocast_cache: "#999999",
    logits: "#882255", previous_logits: "#CC6677", logits_fp32: "#AA4499", loss_backward: "#332288", backward_workspace: "#117733",
    forward_workspace: "#88CCEE",
    dequantized_weight: "#DDCC77", embedding_gradient: "#44AA99", optimizer_temporaries: "#661100",
    gradient_buckets: "#6699CC", gathered_weights: "#004488", reduce_scatter_buffers: "#BB5566",
    layer_gradients: "#EE7733", root_gradients: "#994455", output_cache: "#BBBB00", previous_cache: "#EE99AA" };

  /** The shape a pasted config.json gives the form, or an error in one sentence. The page
   * counts Llama-shaped models (a Llama, or a Mistral without a sliding window); any other
   * architecture goes to the command line, which reads it with transformers. */
  const HUB = "https://huggingface.co/";

  function readConfig(text) {
    let c;
    try { c = JSON.parse(text); } catch (e) { throw new Error("That is not JSON: " + e.message); }
    if (!c || typeof c !== "object" || Array.isArray(c)) throw new Error("A config.json is a JSON object.");
    if (c.text_config && typeof c.text_config === "object") c = Object.assign({ model_type: c.model_type }, c.text_config);
    const kind = c.model_type;
    const cli = "python -m llmbook memory config.json --recipe inference";
    if (!kind) throw new Error("No model_type: is this a transformers config.json?");
    if (!(kind === "llama" || (kind === "mistral" && c.sliding_window == null))) {
      throw new Error("This page counts Llama-shaped models and the presets above; for " + kind +
        " use the command line: " + cli);
    }
    const shape = { model_type: kind, num_key_value_heads: c.num_key_value_heads || c.num_attention_heads,
      tie_word_embeddings: !!c.tie_word_embeddings };
    for (const key of ["hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads", "intermediate_size"]) {
      if (!(Number.isInteger(c[key]) && c[key] > 0)) throw new Error("The config has no whole " + key + ".");
      shape[key] = c[key];
    }
    if (c.head_dim && c.head_dim * c.num_attention_heads !== c.hidden_size) {
      throw new Error("Its head_dim is not hidden_size / heads; use the command line: " + cli);
    }
    return shape;
  }

  function memoryCalculator(host, presets, gpuData, modelPresets) {
    modelPresets = modelPresets || {};
    const id = "mc" + Math.random().toString(36).slice(2, 8);
    const fieldsSpec = [["hidden_size", "hidden size"], ["num_hidden_layers", "layers"], ["vocab_size", "vocabulary"],
      ["num_attention_heads", "attention heads"], ["num_key_value_heads", "KV heads"],
      ["intermediate_size", "MLP size"]];
    host.classList.add("llmb-calc"); // a size container: its layout follows its own width
    const layout = el("div", { class: "llmb-calc-layout" });
    host.appendChild(layout);
    const presetBox = el("div", { class: "llmb-grid llmb-calc-preset" }); // the model: its answer comes next
    const modelBox = el("div", { class: "llmb-grid llmb-calc-model" }); // its shape
    const controls = el("div", { class: "llmb-grid llmb-calc-job" }); // the job
    const preset = el("select", { id: id + "-preset" });
    const llamas = el("optgroup", { label: "Llama-shaped (editable below)" });
    for (const name of Object.keys(presets)) llamas.appendChild(el("option", { value: name, text: name }));
    llamas.appendChild(el("option", { value: "custom", text: "custom" }));
    preset.appendChild(llamas);
    if (Object.keys(modelPresets).length) { // mixtures of experts and hybrids, as published
      const others = el("optgroup", { label: "Mixture of experts and hybrids (inference)" });
      for (const name of Object.keys(modelPresets)) others.appendChild(el("option", { value: name, text: name }));
      preset.appendChild(others);
    }
    presetBox.appendChild(el("label", { for: id + "-preset", text: "Preset" }));
    presetBox.appendChild(preset);
    const inputs = {};
    for (const [key, label] of fieldsSpec) {
      inputs[key] = el("input", { type: "number", min: "1", step: "1", id: id + "-" + key, "data-field": key });
      modelBox.appendChild(el("label", { for: id + "-" + key, text: label }));
      modelBox.appendChild(inputs[key]);
    }
    const tie = el("input", { type: "checkbox", id: id + "-tie", "data-field": "tie_word_embeddings" });
    modelBox.appendChild(el("label", { for: id + "-tie", text: "tied embeddings" }));
    modelBox.appendChild(tie);
    const shapeSaid = el("p", { class: "llmb-shape-said llmb-help" }); // a fixed shape, in one line
    modelBox.appendChild(shapeSaid);
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
      ["lora", "LoRA"], ["qlora", "QLoRA (nf4 base)"], ["serve", "serving with vLLM (requests at once)"]]);
    const dtype = select("dtype", "dtype", [["bfloat16", "bf16"], ["float16", "fp16"], ["float32", "fp32"]]);
    const attention = select("attention", "attention (training)", [["sdpa", "SDPA / FlashAttention"],
      ["eager", "eager (keeps the s x s scores)"]]);
    const optimizer = select("optimizer", "optimizer (training)", [["adamw", "AdamW (torch)"],
      ["adamw8bit", "AdamW8bit (bitsandbytes)"], ["sgd", "SGD with momentum"]]);
    const impl = select("optimizer_impl", "AdamW's step (torch)", [["foreach", "foreach (default on CUDA/ROCm)"],
      ["for-loop", "for-loop (default on a CPU)"], ["fused", "fused=True"]]);
    const quant = select("quantization", "quantization (inference)", [["", "none"], ["int8", "int8 (LLM.int8)"],
      ["nf4", "nf4"]]);
    const kvQuant = select("kv_quant", "KV cache stored as (inference)", [["", "the compute dtype"],
      ["fp8", "fp8"], ["int4", "int4 (groups of 64, last 128 tokens as they are)"],
      ["int2", "int2 (groups of 64, last 128 tokens as they are)"]]);
    const kvKeep = select("kv_keep", "sliding-window layers keep (inference)", [
      ["all", "every token (the prompt pass, transformers)"], ["window", "their window (decoding)"]]);
    const dq = el("input", { type: "checkbox", id: id + "-dq", "data-field": "double_quant" });
    controls.appendChild(el("label", { for: id + "-dq", text: "double quantization (4-bit)" }));
    controls.appendChild(dq);
    const num = (key, label, value, min) => {
      const i = el("input", { type: "number", min: String(min === undefined ? 1 : min), step: "1", id: id + "-" + key, value: String(value),
        "data-field": key });
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
    const serveGpu = select("serve_gpu", "GPU (serving)", gpuData.gpus.map((g) => [g.name, g.name]));
    serveGpu.value = "H100 80GB";
    const share = num("utilization", "engine's share, % (serving)", Math.round(100 * gpuData.serving.utilization));
    const block = num("block", "block, tokens (serving)", gpuData.serving.block_tokens);
    const prompt = num("prompt", "prompt, tokens (serving)", 1000);
    const answerLen = num("answer", "answer, tokens (serving)", 500);
    const prefix = num("shared_prefix", "shared prefix, tokens (serving)", 0, 0);
    const out = el("div", { class: "llmb-output" });
    const status = el("p", { class: "llmb-visually-hidden", role: "status", "aria-live": "polite" });
    host.appendChild(status); // says the answer once it changes, not the whole table
    layout.appendChild(presetBox);
    layout.appendChild(out); // beside the form on a wide page, right after the model on a phone
    layout.appendChild(modelBox);
    // a config.json pasted in: its shape fills the fields (Llama-shaped models only here)
    const paste = el("details", { class: "llmb-paste" });
    paste.appendChild(el("summary", { text: "Paste a config.json" }));
    const pasted = el("textarea", { id: id + "-config", rows: "6", cols: "60", spellcheck: "false",
      "aria-label": "a model's config.json" });
    const use = el("button", { type: "button", text: "Use this config" });
    const said = el("p", { class: "llmb-paste-said", "aria-live": "polite" });
    const hubId = el("input", { type: "text", id: id + "-hub", placeholder: "meta-llama/Llama-3.2-1B",
      "aria-label": "a Hugging Face model id" });
    const fetchIt = el("button", { type: "button", text: "Fetch its config.json" });
    paste.appendChild(pasted); paste.appendChild(use);
    paste.appendChild(el("label", { for: id + "-hub", text: " or a Hugging Face model id: " }));
    paste.appendChild(hubId); paste.appendChild(fetchIt); paste.appendChild(said);
    layout.appendChild(paste);
    layout.appendChild(controls);
    const more = el("div", { class: "llmb-more" }); // the details, under the form and the answer
    host.appendChild(more);
    fetchIt.addEventListener("click", async () => {
      const name = hubId.value.trim();
      said.className = "llmb-paste-said";
      if (!/^[\w.-]+\/[\w.-]+$/.test(name)) {
        said.className += " llmb-error"; said.textContent = "A model id is owner/name, e.g. meta-llama/Llama-3.2-1B.";
        return;
      }
      said.textContent = "Fetching " + name + "'s config.json...";
      let response;
      try {
        response = await fetch(HUB + name + "/resolve/main/config.json");
      } catch (e) { // offline, or the hub unreachable from this page
        said.className += " llmb-error";
        said.textContent = "Could not reach huggingface.co (offline?): paste the config.json instead.";
        return;
      }
      if (!response.ok) {
        said.className += " llmb-error";
        said.textContent = response.status === 401 || response.status === 403
          ? name + " is gated: download its config.json with your token and paste it."
          : "huggingface.co has no config.json for " + name + " (HTTP " + response.status + ").";
        return;
      }
      pasted.value = await response.text();
      use.click();
      remember();
    });
    use.addEventListener("click", () => {
      said.className = "llmb-paste-said";
      try {
        const shape = readConfig(pasted.value);
        preset.value = "custom";
        loadPreset();
        for (const [key] of fieldsSpec) inputs[key].value = String(shape[key]);
        tie.checked = !!shape.tie_word_embeddings;
        said.textContent = "Using this " + shape.model_type + " config (preset: custom).";
        render(); remember();
      } catch (e) {
        said.className = "llmb-paste-said llmb-error";
        said.textContent = e.message;
      }
    });

    function loadPreset() {
      const model = modelPresets[preset.value]; // its shape is fixed: the fields show it
      for (const [key] of fieldsSpec) inputs[key].disabled = !!model;
      tie.disabled = !!model;
      modelBox.classList.toggle("llmb-locked", !!model); // its fields fold into one line
      const p = model || presets[preset.value];
      if (!p) return;
      for (const [key] of fieldsSpec) inputs[key].value = p[key] == null ? "" : String(p[key]);
      tie.checked = !!p.tie_word_embeddings;
      const experts = model && (p.num_local_experts || p.num_experts);
      shapeSaid.textContent = model ? "Its shape, as published: " + fieldsSpec.filter(([key]) => p[key] != null)
        .map(([key, label]) => label + " " + p[key]).join(", ") + (experts ? ", " + experts + " experts (" + p.num_experts_per_tok +
          " per token)" : "") + (p.tie_word_embeddings ? ", tied embeddings" : "") +
        " (fixed for this preset; choose a Llama-shaped one or custom to edit)." : "";
    }

    function config() {
      if (modelPresets[preset.value]) return modelPresets[preset.value];
      const c = {};
      for (const [key] of fieldsSpec) c[key] = Number(inputs[key].value);
      c.tie_word_embeddings = tie.checked;
      return c;
    }

    function render() {
      const c = config();
      out.innerHTML = ""; more.innerHTML = "";
      const model = modelPresets[preset.value];
      const bad = model ? [] : fieldsSpec.filter(([k]) => !(Number.isInteger(c[k]) && c[k] > 0)).map(([, l]) => l);
      if (!bad.length && c.hidden_size % c.num_attention_heads) bad.push("hidden size divisible by heads");
      if (!bad.length && c.num_attention_heads % c.num_key_value_heads) bad.push("heads divisible by KV heads");
      if (bad.length) { out.appendChild(el("p", { class: "llmb-error", text: "Check: " + bad.join(", ") })); return; }
      if (recipe.value === "serve") { renderServing(c, model); return; }
      const job = { recipe: recipe.value, dtype: dtype.value, quantization: quant.value || null,
        double_quant: dq.checked, batch: Number(batch.value), context: Number(context.value),
        checkpointing: ckpt.checked, lora_rank: Number(rank.value), optimizer: optimizer.value,
        attention: attention.value, optimizer_impl: impl.value, kv_quant: kvQuant.value || null,
        kv_keep: kvKeep.value };
      const whole = (i) => /^[1-9][0-9]{0,8}$/.test(i.value.trim());
      const wrong = [[batch, "batch"], [context, "context"], [rank, "LoRA rank"], [gpus, "GPUs"]]
        .filter(([i]) => !whole(i)).map(([, label]) => label);
      if (wrong.length) {
        out.appendChild(el("p", { class: "llmb-error", text: "Check: " + wrong.join(", ") +
          ": a whole number from 1" })); return;
      }
      const nGpus = Number(gpus.value);
      const parallel = recipe.value !== "inference" && (nGpus > 1 || offload.checked);
      if (parallel && offload.checked && sharding.value !== "zero2" && sharding.value !== "zero3") {
        out.appendChild(el("p", { class: "llmb-error", text: "Check: CPU offload needs ZeRO-2 or ZeRO-3" })); return;
      }
      if (model && recipe.value !== "inference") {
        out.appendChild(el("p", { class: "llmb-error", text: "Check: the job. Training memory is counted " +
          "for Llama-shaped models only; for " + preset.value + " choose inference" })); return;
      }
      let phases;
      try {
        phases = parallel ? shardedPhases(c, Object.assign({ gpus: nGpus, sharding: sharding.value,
          offload: offload.checked }, job)) : stepPhases(c, job);
      } catch (e) { // a choice this model does not take (an int4 cache on sliding layers): one line
        out.appendChild(el("p", { class: "llmb-error", text: "Check: " + e.message })); return;
      }
      const [moment, live] = largest(phases);
      const GiB = Math.pow(2, 30);
      const sum = (p) => Object.values(p).reduce((s, v) => s + v, 0);
      const total = sum(live);
      const fits = fitsOn(total, gpuData); // the answer first: fits or not, and where
      const rule = "usable memory = nvidia-smi's total less " + (gpuData.cuda_reserve_bytes / GiB).toFixed(0) +
        " GiB for the driver and CUDA context, less " + (gpuData.allocator_slack * 100).toFixed(0) +
        "% for the allocator";
      const answer = (fits.length ? "Fits on: " + fits.join(", ") : "Fits on none of these " +
        (parallel ? "GPUs" : "single GPUs")) + (parallel ? ", " + nGpus + " of them" : "") + ".";
      out.appendChild(el("p", { class: "llmb-fits", title: rule, text: answer }));
      if (status.textContent !== answer) status.textContent = answer;
      more.appendChild(el("p", { class: "llmb-note", text: "Whether it fits: " + rule + "." }));
      out.appendChild(el("p", { class: "llmb-total", "data-total-bytes": String(total), "data-moment": moment,
        text: (parameters(c) / 1e9).toFixed(2) + "B parameters" + (model ? " (" +
          (model.active_parameters / 1e9).toFixed(2) + "B active per token)" : "") +
          "; peak " + (total / GiB).toFixed(2) + " GiB" +
          (parallel ? " on each of " + nGpus + " GPUs (" + sharding.value + (offload.checked ? ", offload" : "") + ")" : "") +
          ", during the " + moment + (recipe.value === "inference" ? "" : " (the parts alive then, below)") }));
      const smallest = gpuData.gpus.filter((g) => fits.indexOf(g.name) >= 0)
        .reduce((m, g) => Math.min(m, g.usable_bytes / GiB), Infinity);
      const maxGiB = Math.max(total / GiB, 16, Number.isFinite(smallest) ? smallest : 0) * 1.08;
      const W = 420; const H = 64; const scaleX = (g) => 10 + (g / maxGiB) * (W - 20);
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
        l.setAttribute("y1", "2"); l.setAttribute("y2", String(H - 10)); l.setAttribute("stroke", "currentColor");
        l.setAttribute("stroke-dasharray", "3 3");
        const tip = document.createElementNS(ns, "title");
        tip.textContent = gpu.name + ": " + g.toFixed(1) + " GiB usable of " + gpu.total_mib + " MiB";
        l.appendChild(tip);
        svg.appendChild(l);
        if (scaleX(g) - lastLabel < 64) continue; // too close to the last label to read
        lastLabel = scaleX(g);
        const t = document.createElementNS(ns, "text");
        t.setAttribute("x", String(scaleX(g))); t.setAttribute("y", String(H + 4)); t.setAttribute("font-size", "12");
        t.setAttribute("text-anchor", "middle"); t.setAttribute("fill", "currentColor"); t.textContent = gpu.name;
        svg.appendChild(t);
      }
      const axis = document.createElementNS(ns, "text");
      axis.setAttribute("x", String(W / 2)); axis.setAttribute("y", String(H + 30)); axis.setAttribute("font-size", "13");
      axis.setAttribute("text-anchor", "middle"); axis.setAttribute("fill", "currentColor");
      axis.textContent = "memory (GiB); dashed lines: each GPU's usable memory";
      svg.appendChild(axis);
      out.appendChild(svg);
      if (parallel && offload.checked) {
        const host = Object.assign({ gpus: nGpus, sharding: sharding.value }, job); // the CPU step: fused if
        host.optimizer_impl = impl.value === "fused" ? "fused" : "for-loop"; // asked, else torch's default
        const cpu = sum(offloadedBytes(c, host));
        more.appendChild(el("p", { class: "llmb-offload", "data-offload-bytes": String(cpu),
          text: "CPU memory for the offloaded shards: " + (cpu / GiB).toFixed(2) + " GiB for each process, " +
            (nGpus * cpu / GiB).toFixed(1) + " GiB for all " + nGpus + " together" +
            " (weights, gradients and optimizer states, the weights and gradients pinned; and the CPU" +
            " optimizer step's temporaries: torch's default for-loop AdamW, or fused if chosen)" }));
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
      if (recipe.value === "inference" && fits.length) more.appendChild(speedTable(c, job, fits));
      if (recipe.value !== "inference") { // every moment of the step, the peak marked
        const m = el("table", { class: "llmb-table llmb-moments" });
        m.appendChild(el("caption", { text: "The step, moment by moment (in order): the memory alive at each" }));
        m.appendChild(el("tr", {}, ["moment of the step", "GiB", ""].map((h) => el("th", { scope: "col", text: h }))));
        for (const [name, p] of Object.entries(phases)) {
          const bar = el("span", { class: "llmb-mbar", "aria-hidden": "true" });
          bar.style.width = (100 * sum(p) / total).toFixed(1) + "%";
          m.appendChild(el("tr", { "data-moment": name, class: name === moment ? "llmb-peak" : "" },
            [el("th", { scope: "row", text: name + (name === moment ? " (peak)" : "") }),
              el("td", { text: (sum(p) / GiB).toFixed(3) }), el("td", { class: "llmb-mbar-cell" }, [bar])]));
        }
        more.appendChild(m);
        more.appendChild(el("p", { class: "llmb-note", text: "The loop assumed: out = model(**batch); " +
          "out.loss.backward(); optimizer.step(); optimizer.zero_grad(), one batch per step (no gradient " +
          "accumulation), AdamW stepping as chosen above, out keeping the KV cache transformers builds in the " +
          "forward pass (not under gradient checkpointing; model.config.use_cache = False drops it)" + (parallel && (sharding.value === "zero2" ||
          sharding.value === "zero3") && recipe.value === "full" ? "; under FSDP2 the autocast job means a bf16 " +
          "MixedPrecisionPolicy with reduce_dtype=float32" : "") + ". On a T4, or computing in fp32, a model with " +
          "grouped KV heads may get SDPA's math kernel, which keeps the scores: choose eager attention then." }));
      }
      if (model) {
        more.appendChild(el("p", { class: "llmb-note", text: preset.value + "'s published shapes (" + model.hub_id +
          "), its weights in the dtype chosen here: every expert in memory, its cache layer by layer" +
          (model.state_bytes ? " with the fixed-size states of its recurrent layers" : "") + ". With int8 or " +
          "nf4, bitsandbytes in transformers 5 quantizes only nn.Linear layers: stacked experts stay in 16 " +
          "bits. gpt-oss ships its experts in MXFP4 and DeepSeek-V3 in fp8; the command line counts gpt-oss " +
          "as shipped (--quantization mxfp4)." }));
      }
      const rows = [["moment", "part", "bytes"]];
      for (const [name, parts] of Object.entries(phases)) {
        for (const [part, bytes] of Object.entries(parts)) rows.push([name, part, String(bytes)]);
      }
      more.appendChild(links({ settings: Object.fromEntries(stateOf()), peak_moment: moment, peak_bytes: live,
        moments_bytes: phases, fits_on: fits }, rows));
    }

    /** At best, on each GPU the inference job fits: the roofline's bounds (llmbook.memory.roofline,
     * the command line's "at best" lines), from each GPU's data sheet. */
    function speedTable(c, job, fits) {
      const width = job.dtype === "float32" ? 4 : 2;
      const g = el("table", { class: "llmb-table llmb-speed" });
      g.appendChild(el("caption", { text: "At best (a roofline: bounds from each GPU's data sheet, not " +
        "predictions): the prompt of " + job.context.toLocaleString("en-US") + " tokens, then decoding there" }));
      g.appendChild(el("tr", {}, ["GPU", "first token, at least (ms)", "decoding, at most (tokens/s)",
        "bounded by"].map((h) => el("th", { scope: "col", text: h }))));
      for (const gpu of gpuData.gpus.filter((x) => fits.indexOf(x.name) >= 0)) {
        const compute = computeFor(gpu, job.dtype, job.quantization);
        let b;
        try {
          b = roofline(c, gpu, compute, job.batch, job.context, null, width, job.quantization, width,
            job.kv_quant, job.double_quant);
        } catch (e) { return el("p", { class: "llmb-note", text: "No speed bound: " + e.message }); }
        g.appendChild(el("tr", { "data-gpu": gpu.name, "data-decode": String(b.decode_tok_s) }, [
          el("th", { scope: "row", text: gpu.name, title: gpu.speed_source }),
          el("td", { text: (1e3 * b.ttft_s).toFixed(2) }),
          el("td", { text: Math.round(b.decode_tok_s).toLocaleString("en-US") }),
          el("td", { text: b.step_bound + " (" + compute + ")" })]));
      }
      return g;
    }

    /** Serving: vLLM's budget on the chosen GPU, the requests that fit, and every GPU at a glance
     * (llmbook.memory.serving, the command line's `python -m llmbook serve`). */
    function renderServing(c, model) {
      const GiB = Math.pow(2, 30);
      const whole = (i, min) => (min === 0 ? /^(0|[1-9][0-9]{0,8})$/ : /^[1-9][0-9]{0,8}$/).test(i.value.trim());
      const wrong = [[prompt, "prompt"], [answerLen, "answer"], [block, "block"], [share, "engine's share"]]
        .filter(([i]) => !whole(i)).map(([, label]) => label + " (a whole number from 1)");
      if (!whole(prefix, 0)) wrong.push("shared prefix (a whole number from 0)");
      if (!wrong.length && Number(share.value) > 100) wrong.push("engine's share (at most 100%)");
      if (!wrong.length && Number(prefix.value) > Number(prompt.value)) wrong.push("shared prefix (at most the prompt)");
      if (kvQuant.value === "int4" || kvQuant.value === "int2") wrong.push("KV cache: vLLM stores it in 16 bits or fp8");
      if (wrong.length) { out.appendChild(el("p", { class: "llmb-error", text: "Check: " + wrong.join(", ") })); return; }
      const width = dtype.value === "float32" ? 4 : 2;
      const q = quant.value || (model && model.published_quantization) || null;
      const opts = { width, quantization: q, double_quant: dq.checked, utilization: Number(share.value) / 100,
        block: Number(block.value), kv_bytes: kvQuant.value === "fp8" ? 1 : width };
      const P = Number(prompt.value); const A = Number(answerLen.value); const S = Number(prefix.value);
      let all;
      try {
        all = gpuData.gpus.map((gpu) => {
          const b = servingBudget(c, gpu, gpuData.serving, opts);
          return { b, fit: b.blocks ? requestsThatFit(c, b, P, A, S) : null };
        });
      } catch (e) { out.appendChild(el("p", { class: "llmb-error", text: "Check: " + e.message })); return; }
      const { b, fit } = all.find((x) => x.b.gpu === serveGpu.value);
      const tokens = (P + A).toLocaleString("en-US");
      const answer = fit ? "On one " + b.gpu + ": " + fit.requests.toLocaleString("en-US") + " requests of " +
        tokens + " tokens at once (limit: " + fit.limit + ")." : "On one " + b.gpu + ": no room for a KV cache " +
        "(the weights and activations take the engine's share).";
      out.appendChild(el("p", { class: "llmb-fits", text: answer }));
      if (status.textContent !== answer) status.textContent = answer;
      out.appendChild(el("p", { class: "llmb-total", "data-total-bytes": String(Math.max(b.kv_cache, 0)),
        "data-requests": String(fit ? fit.requests : 0), text: "KV cache " + (Math.max(b.kv_cache, 0) / GiB).toFixed(2) +
          " GiB: " + b.blocks.toLocaleString("en-US") + " blocks of " + b.block_tokens + " tokens, " +
          b.cache_tokens.toLocaleString("en-US") + " tokens" + (fit ? "; " + fit.blocks_each + " blocks each" +
          (fit.shared_blocks ? ", " + fit.shared_blocks + " shared blocks stored once" : "") : "") }));
      const t = el("table", { class: "llmb-table llmb-serving" });
      t.appendChild(el("caption", { text: "vLLM's budget on one " + b.gpu }));
      t.appendChild(el("tr", {}, ["part", "GiB"].map((h) => el("th", { scope: "col", text: h }))));
      const parts = [["torch's total", b.total], ["engine's share (" + share.value + "%)", b.requested],
        ["− weights", b.weights], ["− activation peak (" + b.step_tokens.toLocaleString("en-US") +
          " tokens, modelled)", b.activations], ["− outside PyTorch", b.non_torch], ["= KV cache", b.kv_cache]];
      for (const [label, v] of parts) {
        t.appendChild(el("tr", {}, [el("th", { scope: "row", text: label }), el("td", { text: (v / GiB).toFixed(2) })]));
      }
      out.appendChild(t);
      const g = el("table", { class: "llmb-table llmb-serving-gpus" });
      g.appendChild(el("caption", { text: "Requests of " + tokens + " tokens at once, on each GPU" }));
      g.appendChild(el("tr", {}, ["GPU", "requests", "limit"].map((h) => el("th", { scope: "col", text: h }))));
      for (const x of all) {
        g.appendChild(el("tr", { "data-gpu": x.b.gpu }, [el("th", { scope: "row", text: x.b.gpu }),
          el("td", { text: x.fit ? x.fit.requests.toLocaleString("en-US") : "0" }),
          el("td", { text: x.fit ? x.fit.limit : "no room" })]));
      }
      more.appendChild(g);
      more.appendChild(el("p", { class: "llmb-note", text: "vLLM's V1 engine as its source budgets a GPU " +
        "(gpu_worker.py's determine_available_memory, kv_cache_utils.py's get_num_blocks): the engine's share " +
        "of torch's total, less the weights, the activation peak of a profiling pass over max_num_batched_tokens " +
        "(the book's prompt-pass model), and " + (gpuData.serving.non_torch_bytes / GiB).toFixed(2) + " GiB outside " +
        "PyTorch (a logged figure); what is left is cut into blocks. Each request holds its blocks to its last " +
        "token; requests sharing a prefix share its full blocks (prefix caching); sliding-window layers hold " +
        "their window and one step. CUDA graphs are captured after the cache, in the rest of the GPU." +
        (q && !quant.value ? " " + preset.value + "'s weights as published (" + q + ")." : "") }));
      const rows = [["part", "bytes"], ...parts.map(([label, v]) => [label.replace(/,/g, ""), String(v)])];
      more.appendChild(links({ settings: Object.fromEntries(stateOf()), budget: b, fit }, rows));
    }

    // ---------------------------------------- the state in the URL: a link reproduces the page
    const isShape = (f) => f === tie || fieldsSpec.some(([k]) => k === f.dataset.field);
    function stateOf() {
      const q = new URLSearchParams({ preset: preset.value });
      for (const f of host.querySelectorAll("[data-field]")) {
        if (isShape(f) && preset.value !== "custom") continue; // a preset's shape is its name
        q.set(f.dataset.field, f.type === "checkbox" ? (f.checked ? "1" : "0") : f.value);
      }
      return q;
    }
    /** Applies a permalink's settings; returns those it did not understand (left as they were). */
    function applyState(text) {
      const q = new URLSearchParams(text);
      const bad = [];
      const name = q.get("preset");
      if (name && (presets[name] || modelPresets[name] || name === "custom")) preset.value = name;
      else if (name !== null) bad.push("preset " + name);
      loadPreset();
      for (const [key, value] of q) {
        const f = [...host.querySelectorAll("[data-field]")].find((x) => x.dataset.field === key);
        if (key === "preset") continue;
        if (!f || (isShape(f) && preset.value !== "custom")) { bad.push(key); continue; }
        const ok = f.type === "checkbox" ? /^[01]$/.test(value)
          : f.tagName === "SELECT" ? [...f.options].some((o) => o.value === value)
          : (f.min === "0" ? /^(0|[1-9][0-9]{0,8})$/ : /^[1-9][0-9]{0,8}$/).test(value);
        if (!ok) { bad.push(key + " " + value); continue; }
        if (f.type === "checkbox") f.checked = value === "1"; else f.value = value;
      }
      return bad;
    }
    const PREFIX = "#calc?";
    const linkError = (bad) => el("p", { class: "llmb-error llmb-link-error", text: "This link's settings " +
      "were not all understood (" + bad.join(", ") + "): those were left as they were." });
    function remember() {
      if (typeof history !== "undefined" && history.replaceState) {
        history.replaceState(null, "", PREFIX + stateOf().toString());
      }
    }
    /** Copy link, and the breakdown as JSON or CSV. */
    const blobs = [];
    function links(data, rows) {
      const box = el("p", { class: "llmb-links" });
      const copy = el("button", { type: "button", text: "Copy link" });
      const said = el("span", { class: "llmb-link-said", "aria-live": "polite" });
      copy.addEventListener("click", () => {
        const url = location.href;
        const done = () => { said.textContent = " Link copied."; };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(url).then(done, () => { said.textContent = " Copy this link: " + url; });
        } else said.textContent = " Copy this link: " + url;
      });
      for (const url of blobs.splice(0)) URL.revokeObjectURL(url); // the last render's
      const file = (text, type, name) => {
        blobs.push(URL.createObjectURL(new Blob([text], { type })));
        return el("a", { href: blobs[blobs.length - 1], download: name, text: name, class: "llmb-download" });
      };
      box.appendChild(copy); box.appendChild(document.createTextNode(" Download: "));
      box.appendChild(file(JSON.stringify(data, null, 1), "application/json", "memory.json"));
      box.appendChild(document.createTextNode(" "));
      box.appendChild(file(rows.map((r) => r.join(",")).join("\n") + "\n", "text/csv", "memory.csv"));
      box.appendChild(said);
      return box;
    }

    preset.addEventListener("change", () => { loadPreset(); render(); remember(); });
    host.addEventListener("input", (e) => {
      if (!e.target.dataset || !e.target.dataset.field) return; // the pasted config's box
      if (isShape(e.target)) preset.value = "custom";
      render(); remember();
    });
    host.addEventListener("change", (e) => {
      const t = e.target;
      if (t.dataset && t.dataset.field && (t.tagName === "SELECT" || t.type === "checkbox")) {
        render(); remember();
      }
    });
    if (typeof window !== "undefined") window.addEventListener("hashchange", () => { // an edited address
      if (!location.hash.startsWith(PREFIX)) return;
      const wrong = applyState(location.hash.slice(PREFIX.length));
      render();
      if (wrong.length) out.prepend(linkError(wrong));
    });
    preset.value = host.dataset.preset && (presets[host.dataset.preset] || modelPresets[host.dataset.preset])
      ? host.dataset.preset : Object.keys(presets)[0];
    loadPreset();
    const hash = typeof location !== "undefined" ? location.hash : "";
    const bad = hash.startsWith(PREFIX) ? applyState(hash.slice(PREFIX.length)) : [];
    render();
    if (bad.length) out.prepend(linkError(bad)); // an old or edited link: said once, above the answer
  }

  Object.assign(W, { PART_COLORS, PART_LABELS, memoryCalculator, readConfig });
})(typeof module === "object" && module.exports
  ? require("./namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
