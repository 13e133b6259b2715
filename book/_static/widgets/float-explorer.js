/*
 * The float explorer's page: inputs, bits to click, the tables.
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
  "use strict";
  const { FORMATS, MX_BLOCK, MX_FORMATS, classify, decode, el, encode, fields, fmt, neighbours, pow2, quantizeInt8, quantizeMxBlock, quantizeNf4 } = W;

  function floatExplorer(host) {
    const id = "fx" + Math.random().toString(36).slice(2, 8);
    const input = el("input", { type: "text", id: id + "-v", value: host.dataset.value || "0.1", inputmode: "decimal",
      "aria-describedby": id + "-help", class: "llmb-input" });
    const slider = el("input", { type: "range", min: "-16", max: "16", step: "0.01", value: "0",
      "aria-label": "drag: value on a logarithmic scale (2 to the power shown)", class: "llmb-slider" });
    const scale = el("input", { type: "text", id: id + "-s", value: host.dataset.scale || "1", inputmode: "decimal",
      class: "llmb-input llmb-small" });
    host.classList.add("llmb-fx"); // a size container: narrow, each format's row becomes a card
    const table = el("table", { class: "llmb-table llmb-formats", role: "table" });
    const qtable = el("table", { class: "llmb-table" });
    host.appendChild(el("div", { class: "llmb-controls" }, [
      el("label", { for: id + "-v", text: "Value " }), input, slider,
      el("label", { for: id + "-s", text: " Scale (absmax) for int8 and nf4 " }), scale]));
    host.appendChild(el("p", { id: id + "-help", class: "llmb-help",
      text: "Type a number (1e-5, -65504, inf, nan), or drag. Click a bit to flip it, or Tab to a format's bits, " +
        "move with the arrow keys and press Enter or Space." }));
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

    // one tab stop per format's bits; the arrow keys move between bits (and formats),
    // Enter or Space flips the focused one (a button's own keys)
    const cursor = {}; // format -> the bit that holds its tab stop
    const COLUMNS = ["stored value", "kind", "rounding error", "next below", "next above"];

    function moveFocus(e) {
      const b = e.target.closest("button.llmb-bit");
      if (!b) return;
      const rows = [...table.querySelectorAll("tr.llmb-bitrow")];
      const row = b.closest("tr");
      const bits = [...row.querySelectorAll("button.llmb-bit")];
      const i = bits.indexOf(b);
      let next = null;
      if (e.key === "ArrowLeft") next = bits[Math.max(0, i - 1)];
      else if (e.key === "ArrowRight") next = bits[Math.min(bits.length - 1, i + 1)];
      else if (e.key === "Home") next = bits[0];
      else if (e.key === "End") next = bits[bits.length - 1];
      else if (e.key === "ArrowUp" || e.key === "ArrowDown") { // the same place from the right
        const other = rows[rows.indexOf(row) + (e.key === "ArrowUp" ? -1 : 1)];
        if (!other) return;
        const those = [...other.querySelectorAll("button.llmb-bit")];
        next = those[Math.max(0, those.length - (bits.length - i))];
      } else return;
      e.preventDefault();
      for (const x of next.closest("tr").querySelectorAll("button.llmb-bit")) x.tabIndex = x === next ? 0 : -1;
      cursor[next.dataset.format] = next.dataset.bit;
      next.focus();
    }
    table.addEventListener("keydown", moveFocus);

    function render() {
      const x = parse(input.value);
      table.innerHTML = "";
      table.appendChild(el("caption", { text: "The value in each format, and its bits (sign, exponent, mantissa) " +
        "under it" }));
      table.appendChild(el("tr", { class: "llmb-head" }, ["format"].concat(COLUMNS).map(
        (t) => el("th", { scope: "col", text: t }))));
      for (const [key, f] of Object.entries(FORMATS)) {
        const bits = encode(x, f);
        const v = decode(bits, f);
        const parts = fields(bits, f);
        const name = el("th", { scope: "row", text: f.name });
        if (bits === null) {
          const why = f.unsigned ? "a scale is positive: no code for this value" : "this format has no NaN";
          table.appendChild(el("tr", { "data-format": key }, [name].concat(
            [["-", "llmb-value"], ["not representable", "llmb-kind"], [why, ""], ["-", ""], ["-", ""]].map(
              ([t, c], j) => el("td", { class: c, "data-label": COLUMNS[j], text: t })))));
          continue;
        }
        name.setAttribute("rowspan", "2");
        const bitCell = el("td", { class: "llmb-bits", colspan: String(COLUMNS.length) });
        const group = el("div", { role: "group", class: "llmb-bitgroup",
          "aria-label": f.name + " bits: arrow keys move, Enter or Space flips one" });
        bitCell.appendChild(group);
        const mark = cursor[key] !== undefined && Number(cursor[key]) < f.width ? Number(cursor[key]) : f.width - 1;
        let index = f.width - 1;
        for (const [part, str] of [["sign", parts.sign], ["exponent", parts.exponent], ["mantissa", parts.mantissa]]) {
          for (const ch of str) {
            const position = index;
            const b = el("button", { type: "button", class: "llmb-bit llmb-" + part, "data-format": key,
              "data-bit": String(position), "aria-label": f.name + " " + part + " bit " + position + ", now " + ch,
              tabindex: position === mark ? "0" : "-1", text: ch });
            b.addEventListener("click", () => {
              const flipped = Math.floor(bits / pow2(position)) % 2 ? bits - pow2(position) : bits + pow2(position);
              cursor[key] = String(position);
              setValue(decode(flipped, f));
              const again = host.querySelector(`button[data-format="${key}"][data-bit="${position}"]`);
              if (again) again.focus();
            });
            group.appendChild(b);
            index -= 1;
          }
          if (group.lastChild) group.lastChild.classList.add("llmb-bit-last");
        }
        const err = Number.isFinite(x) && Number.isFinite(v) ? v - x : null;
        const rel = err !== null && x !== 0 ? " (" + (100 * Math.abs(err / x)).toPrecision(3) + "%)" : "";
        const nb = neighbours(bits, f);
        table.appendChild(el("tr", { "data-format": key }, [name].concat(
          [[fmt(v), "llmb-value"], [classify(bits, f), "llmb-kind"], [err === null ? "-" : fmt(err) + rel, ""],
            [fmt(nb.below), ""], [fmt(nb.above), ""]].map(
            ([t, c], j) => el("td", { class: c, "data-label": COLUMNS[j], text: t })))));
        table.appendChild(el("tr", { "data-format": key, class: "llmb-bitrow" }, [bitCell]));
      }
      // roles said outright: a narrow page shows the rows as cards (display: block)
      for (const r of table.querySelectorAll("tr")) r.setAttribute("role", "row");
      for (const c of table.querySelectorAll("th, td")) {
        c.setAttribute("role", c.tagName === "TD" ? "cell" : c.scope === "row" ? "rowheader" : "columnheader");
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
    // the state in the URL (#floats?...): a link reproduces what the reader saw
    const PREFIX = "#floats?";
    const STATE = { v: input, s: scale, block: block, format: mxFormat };
    function remember() {
      if (typeof history === "undefined" || !history.replaceState) return;
      const q = new URLSearchParams();
      for (const [key, field] of Object.entries(STATE)) q.set(key, field.value);
      history.replaceState(null, "", PREFIX + q.toString());
    }
    function applyState(text) { // what a link sets; what it gets wrong is named, not applied
      const bad = [];
      for (const [key, value] of new URLSearchParams(text)) {
        const field = STATE[key];
        const ok = key === "v" ? !Number.isNaN(parse(value)) || value.trim().toLowerCase() === "nan"
          : key === "s" ? parse(value) > 0 && Number.isFinite(parse(value))
            : key === "format" ? Object.prototype.hasOwnProperty.call(MX_FORMATS, value)
              : key === "block";
        if (field && ok) field.value = value; else bad.push(key + " " + value.slice(0, 20));
      }
      return bad;
    }

    block.addEventListener("input", () => { renderBlock(); remember(); });
    mxFormat.addEventListener("change", () => { renderBlock(); remember(); });

    input.addEventListener("input", () => { render(); remember(); });
    scale.addEventListener("input", () => { render(); remember(); });
    table.addEventListener("click", remember); // a bit flipped
    table.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") setTimeout(remember); });
    slider.addEventListener("input", () => {
      const x = parse(input.value);
      const sign = x < 0 ? -1 : 1;
      input.value = fmt(sign * Number(pow2(Number(slider.value)).toPrecision(4)));
      render(); remember();
    });
    const hash = typeof location !== "undefined" ? location.hash : "";
    const bad = hash.startsWith(PREFIX) ? applyState(hash.slice(PREFIX.length)) : [];
    render(); // and the block
    if (bad.length) { // said until the reader changes something
      const notice = el("p", { class: "llmb-error llmb-link-error", text: "This link's settings were not all " +
        "understood (" + bad.join(", ") + "): those are at their defaults." });
      host.prepend(notice);
      host.addEventListener("input", () => notice.remove(), { once: true });
    }
  }

  Object.assign(W, { floatExplorer });
})(typeof module === "object" && module.exports
  ? require("./namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
