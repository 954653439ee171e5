"""The replay picture: how each model's accuracy moves through the drifts, and which experts answered.

Why one figure: the question a replay answers is "what happened at the drift?", so accuracy and the
router's choice of experts share one time axis, with the drift positions drawn across both panels.
Works from plain data (window rows and the summary dict), so a plot can be redrawn from a run's
``windowed.csv`` / ``summary.json`` without re-running anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never open a window, works on headless machines

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

__all__ = ["plot_run", "drift_log_points"]

# drift_log actions -> (marker, colour, legend text); anything else gets the generic marker
_LOG_MARKERS = {
    "grow": ("^", "tab:green", "expert grown"),
    "grown": ("^", "tab:green", "expert grown"),
    "freeze": ("s", "tab:blue", "expert frozen"),
    "frozen": ("s", "tab:blue", "expert frozen"),
    "prune": ("X", "tab:red", "expert pruned"),
    "pruned": ("X", "tab:red", "expert pruned"),
    "recall": ("*", "tab:purple", "frozen expert recalled"),
    "release": ("v", "tab:purple", "recalled expert released"),
}
_GENERIC_MARKER = ("o", "tab:gray", "pool event")


def drift_log_points(entries: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
    """``(stream position, action)`` for each drift-log entry that says where it happened.

    DriftMoE logs ``{"event": <events learned>, "action": "grow"|"freeze"|"prune"|"recall"|"release",
    ...}``; other spellings (``position``/``n``, ``kind``/``type``) are accepted so other models' logs plot too.
    """
    points = []
    for entry in entries:
        position = None
        for key in ("event", "position", "at", "t", "n", "n_learned", "step", "index"):
            value = entry.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                position = float(value)
                break
        if position is None:
            continue
        action = "event"
        for key in ("action", "event", "type", "kind"):
            value = entry.get(key)
            if isinstance(value, str):
                action = value.lower()
                break
        points.append((position, action))
    return points


def _accuracy_at(xs: Sequence[float], ys: Sequence[float], position: float) -> float:
    """Accuracy of the window containing ``position`` (so markers sit on the model's curve)."""
    for x, y in zip(xs, ys):
        if position <= x:
            return y
    return ys[-1] if ys else 0.0


def _pick_expert_model(windows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> str | None:
    for name in models:
        if any(w.get("expert_shares") for w in windows if w["model"] == name):
            return name
    return None


def plot_run(
    windows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Draw the replay figure into ``path`` (PNG) and return the path.

    ``windows`` are the runner's window rows (``model``, ``window_end``, ``accuracy`` and, for models
    with experts, ``expert_shares`` as ``{expert: share}``); ``summary`` is the run summary (source
    name, drift positions/width, per-model ``drift_log``).  The lower panel (stacked expert shares)
    is drawn for the first model that has expert shares and left out when none has.
    """
    if not windows:
        raise ValueError("nothing to plot: the run produced no windows (was the source empty?)")
    path = Path(path)
    models = list(dict.fromkeys(w["model"] for w in windows))
    source = summary.get("source", {}) if isinstance(summary.get("source"), Mapping) else {}
    drifts = [int(p) for p in source.get("drift_positions", []) or []]
    width = int(source.get("drift_width", 0) or 0)
    expert_model = _pick_expert_model(windows, models)

    if expert_model is not None:
        fig, (ax_acc, ax_share) = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True, layout="constrained",
                                               gridspec_kw={"height_ratios": [3, 2]})
    else:
        fig, ax_acc = plt.subplots(1, 1, figsize=(12, 4.8), layout="constrained")
        ax_share = None

    summary_models = summary.get("models", {}) or {}
    for name in models:
        rows = [w for w in windows if w["model"] == name]
        xs = [w["window_end"] for w in rows]
        ys = [100.0 * w["accuracy"] for w in rows]
        acc = summary_models.get(name, {}).get("accuracy")
        label = f"{name} ({100 * acc:.1f}%)" if isinstance(acc, (int, float)) else name
        ax_acc.plot(xs, ys, linewidth=1.6, label=label, marker="." if len(xs) < 40 else None)
        seen_kinds: set[str] = set()
        for pos, kind in drift_log_points(summary_models.get(name, {}).get("drift_log", []) or []):
            marker, color, text = _LOG_MARKERS.get(kind, _GENERIC_MARKER)
            legend = f"{name}: {text}" if text not in seen_kinds else None
            seen_kinds.add(text)
            ax_acc.scatter([pos], [_accuracy_at(xs, ys, pos)], marker=marker, color=color, s=46,
                           edgecolors="black", linewidths=0.5, zorder=5, label=legend)

    x_max = max(w["window_end"] for w in windows)
    axes = [ax_acc] + ([ax_share] if ax_share is not None else [])
    for k, pos in enumerate(drifts):
        for ax in axes:
            if width > 0.002 * x_max:  # shade gradual drifts only where the shading is visible
                ax.axvspan(pos - width / 2, pos + width / 2, color="0.5", alpha=0.12, linewidth=0,
                           label="drift width" if (k == 0 and ax is ax_acc) else None)
            ax.axvline(pos, color="black", linestyle="--", linewidth=1.1, zorder=4,
                       label="drift" if (k == 0 and ax is ax_acc) else None)

    ax_acc.set_ylabel("windowed accuracy (%)")
    ax_acc.set_ylim(bottom=max(0.0, ax_acc.get_ylim()[0]), top=min(100.5, ax_acc.get_ylim()[1] + 2))
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    window = summary.get("window")
    name = source.get("name", "stream")
    n = source.get("n")
    ax_acc.set_title(title or f"Prequential accuracy on {name}"
                     + (f" — {n:,} events" if isinstance(n, int) else "")
                     + (f", windows of {window:,}" if isinstance(window, int) else ""))

    if ax_share is not None:
        rows = [w for w in windows if w["model"] == expert_model]
        n_exp = max(max(w.get("expert_shares") or {0: 0}) for w in rows) + 1
        # A window's shares hold over the whole window: draw steps from its start to its end.
        xs = [rows[0]["window_start"]] + [w["window_end"] for w in rows]
        stacks = [[100.0 * (w.get("expert_shares") or {}).get(e, 0.0) for w in rows[:1] + rows]
                  for e in range(n_exp)]
        cmap = plt.get_cmap("tab20" if n_exp > 10 else "tab10")
        if n_exp > 10:  # tab20 comes in dark/light pairs: all dark shades first, so neighbours differ
            colors = [cmap((2 * e) % 20 + ((2 * e) // 20) % 2) for e in range(n_exp)]
        else:
            colors = [cmap(e) for e in range(n_exp)]
        # Only experts that answered at least once get a legend entry (a pool of 12 may use 3).
        labels = [f"expert {e}" if any(stacks[e]) else f"_expert {e}" for e in range(n_exp)]
        ax_share.stackplot(xs, stacks, labels=labels, colors=colors, step="pre", alpha=0.9)
        ax_share.set_ylim(0, 100)
        ax_share.set_ylabel("share of predictions (%)")
        ax_share.set_title(f"{expert_model}: which expert answered (router top choice per window)")
        ax_share.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
                        ncol=1 if sum(map(any, stacks)) <= 14 else 2, frameon=False)
        ax_share.grid(True, alpha=0.3)
        ax_share.set_xlabel("events")
    else:
        ax_acc.set_xlabel("events")
    ax_acc.ticklabel_format(axis="x", style="plain")
    ax_acc.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v):,}"))
    ax_acc.set_xlim(0, x_max)

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
