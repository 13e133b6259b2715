/*
 * The float explorer's arithmetic: bit patterns of fp32, fp16, bf16, fp8, fp6, fp4 and E8M0
 * (mirrors ml_dtypes and the book's llmbook.pages.ch01/ch12), MX blocks, absmax int8 and NF4
 * (llmbook.pages.ch03/ch04, bitsandbytes).
 * Part of the book's widgets (see llmbook-widgets.js): a plain script that adds its names to
 * window.LLMBookWidgets in the browser, or to the shared object of namespace.js in Node.
 */
(function (W) {
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

  Object.assign(W, { FORMATS, MX_BLOCK, MX_FORMATS, NF4, classify, complete, decode, encode, encodeE8m0, fields, floorLog2, maxFiniteBits, nanBits, neighbours, pow2, quantizeInt8, quantizeMxBlock, quantizeNf4, roundHalfEven });
})(typeof module === "object" && module.exports
  ? require("./namespace.js")
  : (window.LLMBookWidgets = window.LLMBookWidgets || {}));
