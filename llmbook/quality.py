"""How far a model's next-token predictions moved: perplexity, KL divergence, top-1.

All three are computed per text chunk, so every number comes with a spread: a 95%
percentile-bootstrap interval of the mean over chunks (:func:`interval`). With a dozen
chunks such an interval covers somewhat less often than its nominal level (it ignores
that the spread itself is estimated), so read it as a lower bound on the uncertainty.
A format is called better or worse than another only where the interval of their
*paired* per-chunk difference excludes zero (:func:`paired_interval`): the chunks are
the same text for every format, so their difficulty cancels in the difference.

- **perplexity**: ``exp`` of the mean negative log-likelihood of each next token.
- **KL divergence** ``KL(reference || model)`` of the next-token distributions, per
  token, in nats: how much the whole distribution moved, not only the chosen token.
- **top-1 agreement**: the share of positions where the model's most likely next token
  is the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Coverage of every interval the book reports for quality numbers.
LEVEL = 0.95

#: Chunks scored per forward pass: bounds the logits held at once (chunks x length x vocab).
BATCH = 4


def log_probs(model, chunks: torch.Tensor, batch: int = BATCH) -> torch.Tensor:
    """fp32 log-probabilities of every next token: (chunks, length - 1, vocab)."""
    out = []
    with torch.no_grad():  # not inference_mode: optimum-quanto's int4 layers refuse it
        for i in range(0, len(chunks), batch):
            ids = chunks[i : i + batch].to(model.device)
            logits = model(ids).logits[:, :-1].float().cpu()
            out.append(torch.log_softmax(logits, dim=-1))
    return torch.cat(out)


@dataclass
class Quality:
    """Per-chunk mean NLL, KL from the reference and top-1 agreement (tensors of length
    n_chunks)."""

    nll: torch.Tensor
    kl: torch.Tensor
    top1: torch.Tensor

    @classmethod
    def of(cls, lp: torch.Tensor, chunks: torch.Tensor, reference: torch.Tensor):
        """From log-probabilities ``lp`` and the reference's, on the same ``chunks``."""
        targets = chunks[:, 1:].unsqueeze(-1)
        nll = -lp.gather(-1, targets).squeeze(-1).mean(dim=1)
        kl = (reference.exp() * (reference - lp)).sum(-1).clamp(min=0).mean(dim=1)
        top1 = (lp.argmax(-1) == reference.argmax(-1)).float().mean(dim=1)
        return cls(nll=nll, kl=kl, top1=top1)

    @property
    def perplexity(self) -> float:
        return float(self.nll.mean().exp())


def score(model, chunks: torch.Tensor, reference: torch.Tensor) -> Quality:
    """Run ``model`` on ``chunks`` and compare with the reference log-probabilities."""
    return Quality.of(log_probs(model, chunks), chunks, reference)


def interval(
    values: torch.Tensor, level: float = LEVEL, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded, so repeatable)."""
    g = torch.Generator().manual_seed(seed)
    v = values.double()
    idx = torch.randint(len(v), (resamples, len(v)), generator=g)
    means = v[idx].mean(dim=1)
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return float(means.quantile(lo)), float(means.quantile(hi))


def paired_interval(a: torch.Tensor, b: torch.Tensor, **kw) -> tuple[float, float]:
    """Interval of the mean per-chunk difference ``a - b``: excludes 0 only when the
    two formats differ by more than the chunks' noise."""
    return interval(a - b, **kw)


def perplexity_interval(q: Quality, **kw) -> tuple[float, float]:
    """Perplexity's interval: ``exp`` of the mean NLL's interval."""
    lo, hi = interval(q.nll, **kw)
    return float(torch.tensor(lo).exp()), float(torch.tensor(hi).exp())


def with_interval(values: torch.Tensor, scale: float = 1.0, digits: int = 2) -> str:
    """``"mean [low, high]"`` of ``values`` times ``scale``: the mean and
    :func:`interval`'s bounds, as the quality tables print them."""
    low, high = (scale * v for v in interval(values))
    mean = float(values.mean()) * scale
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
