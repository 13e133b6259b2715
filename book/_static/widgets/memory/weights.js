/*
 * llmbook/memory/weights.py: stored bytes of weights and quantization constants.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { blockLinears, headDim } = W;

  const BLOCK4 = 64; const NESTED = 256; const CODE4 = 16; const CODE8 = 256;
  function constants(numel, outFeatures, quant, doubleQuant) {
    if (quant === "int8") return 4 * outFeatures;
    if (quant !== "nf4") return 0;
    const blocks = Math.ceil(numel / BLOCK4);
    if (!doubleQuant) return 4 * blocks + 4 * CODE4;
    return blocks + 4 * Math.ceil(blocks / NESTED) + 4 * CODE8 + 4 + 4 * CODE4;
  }

  function parameters(c) {
    if (c.n_parameters != null) return c.n_parameters; // a book preset Python counted
    const linear = blockLinears(c).reduce((s, [a, b]) => s + a * b, 0);
    const perLayer = linear + 2 * c.hidden_size;
    const emb = c.vocab_size * c.hidden_size;
    return emb * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * perLayer + c.hidden_size;
  }

  /** Bytes of a Llama model's weights as transformers + bitsandbytes store them
   * (llmbook.memory.estimate): embeddings, head and norms in dtype; the blocks' linear
   * layers quantized when asked; rotary buffers in fp32; quantization constants. */
  function weightBytes(c, width, quant, doubleQuant) {
    if (c.weight_bytes) { // a book preset of another architecture: Python counted each setting
      const key = width + "|" + (quant || "") + "|" + (doubleQuant && quant === "nf4" ? "dq" : "");
      if (c.weight_bytes[key] == null) throw new Error("no weights counted for " + key);
      return c.weight_bytes[key];
    }
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

  Object.assign(W, { BLOCK4, CODE4, CODE8, NESTED, constants, parameters, weightBytes });
})(typeof module === "object" && module.exports
  ? require("../namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
