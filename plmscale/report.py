"""``plmscale report RUN_DIR``: PNG plots of a run from its TensorBoard events, plus a short Markdown
summary, written to ``RUN_DIR/report/`` (or ``--output``).

Plots: train and valid loss, learning rate, gradient norm, throughput (tokens/s, with MFU on a second
axis when logged), and MoE routing metrics when the run logged any. The event files are found under
RUN_DIR (a run's ``train.tensorboard_dir``, or a directory above it); a resumed run adds an event
file, and a step logged again (a resume from an older checkpoint) keeps its newest value.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PANELS = {
    "loss": ("loss", [("train/loss", "train"), ("valid/loss", "valid")]),
    "lr": ("learning rate", [("train/lr", "lr")]),
    "grad_norm": ("gradient norm", [("train/grad_norm", "grad norm")]),
    "throughput": ("tokens/s", [("train/tokens_per_s", "tokens/s")]),
}
"""File stem -> (y label, [(tag, legend)])."""
ROUTING_WORDS = ("routing", "expert", "moe")


def event_files(run_dir: Path) -> list[Path]:
    """TensorBoard event files under ``run_dir``, oldest first (by name: they embed the time)."""
    return sorted(run_dir.rglob("events.out.tfevents.*"), key=lambda p: (p.parent, p.name))


def read_scalars(run_dir: str | Path, strict: bool = False) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over every event file under ``run_dir``. ``strict``: a step logged twice
    for one tag is an error (a resume must continue the curve, not repeat it)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util
    scalars: dict[str, dict[int, float]] = {}
    for path in event_files(Path(run_dir)):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                series = scalars.setdefault(value.tag, {})
                if strict and event.step in series:
                    raise AssertionError(f"{value.tag}: step {event.step} logged twice in {run_dir}")
                series[event.step] = (value.simple_value if value.HasField("simple_value")
                                      else float(tensor_util.make_ndarray(value.tensor)))
    return scalars


def _plot(path: Path, ylabel: str, lines: list[tuple[dict[int, float], str]],
          twin: tuple[dict[int, float], str] | None = None, log: bool = False) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for series, label in lines:
        steps = sorted(series)
        ax.plot(steps, [series[s] for s in steps], label=label,
                marker="o" if len(steps) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if twin is not None:
        other = ax.twinx()
        steps = sorted(twin[0])
        other.plot(steps, [twin[0][s] for s in steps], color="tab:red", label=twin[1])
        other.set_ylabel(twin[1])
    if len(lines) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(scalars: dict[str, dict[int, float]], out: Path) -> list[Path]:
    """One PNG per panel that has data; returns their paths."""
    written = []
    for stem, (ylabel, tags) in PANELS.items():
        lines = [(scalars[tag], label) for tag, label in tags if scalars.get(tag)]
        if not lines:
            continue
        twin = (scalars["train/mfu"], "MFU") if stem == "throughput" and scalars.get("train/mfu") \
            else None
        _plot(out / f"{stem}.png", ylabel, lines, twin, log=stem == "grad_norm")
        written.append(out / f"{stem}.png")
    routing = [(series, tag) for tag, series in sorted(scalars.items())
               if tag.startswith("train/") and any(w in tag for w in ROUTING_WORDS)]
    if routing:
        _plot(out / "routing.png", "routing", routing)
        written.append(out / "routing.png")
    return written


def _last(series: dict[int, float] | None) -> str:
    if not series:
        return "-"
    step = max(series)
    return f"{series[step]:.4g} (step {step})"


def _mean_tail(series: dict[int, float] | None, fraction: float = 0.5) -> str:
    """Mean of the last ``fraction`` of the steps (skips the warm-up's slow first steps)."""
    if not series:
        return "-"
    steps = sorted(series)[-max(int(len(series) * fraction), 1):]
    return f"{sum(series[s] for s in steps) / len(steps):.4g}"


def summary(run_dir: Path, scalars: dict[str, dict[int, float]], plots: list[Path]) -> str:
    """The Markdown summary: final and best losses, throughput, memory, per-source samples."""
    train, valid = scalars.get("train/loss", {}), scalars.get("valid/loss", {})
    rows = [("steps logged", f"{len(train)} (last {max(train) if train else '-'})"),
            ("train loss, first", f"{train[min(train)]:.4g}" if train else "-"),
            ("train loss, last", _last(train)),
            ("valid loss, last", _last(valid)),
            ("valid loss, best", f"{min(valid.values()):.4g} (step {min(valid, key=valid.get)})"
             if valid else "-"),
            ("learning rate, last", _last(scalars.get("train/lr"))),
            ("tokens/s (mean, second half)", _mean_tail(scalars.get("train/tokens_per_s"))),
            ("MFU (mean, second half)", _mean_tail(scalars.get("train/mfu"))),
            ("peak memory per rank, GiB", _last(scalars.get("train/memory_gib_per_rank")))]
    rows += [(f"valid {tag[6:]}, last", _last(series)) for tag, series in sorted(scalars.items())
             if tag.startswith("valid/") and tag != "valid/loss"]
    rows += [(f"samples from {tag[14:]}", _last(series)) for tag, series in sorted(scalars.items())
             if tag.startswith("train/samples_")]
    lines = [f"# Run report: {run_dir}", "", "| what | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the plots and ``report.md`` for ``run_dir``; returns the Markdown file's path."""
    run_dir = Path(run_dir)
    if not event_files(run_dir):
        raise FileNotFoundError(f"no TensorBoard event files under {run_dir}; point RUN_DIR at a "
                                f"run's train.tensorboard_dir (or a directory above it)")
    scalars = read_scalars(run_dir)
    out = Path(output) if output else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(scalars, out)
    markdown = out / "report.md"
    markdown.write_text(summary(run_dir, scalars, plots))
    return markdown


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="plmscale report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run's directory (TensorBoard "
                        "event files anywhere below it)")
    parser.add_argument("--output", default=None, help="where to write (default RUN_DIR/report)")
    args = parser.parse_args(argv)
    try:
        markdown = report(args.run_dir, args.output)
    except FileNotFoundError as error:
        print(f"plmscale report: {error}")
        return 2
    print(f"plmscale report: {markdown} (plots next to it)")
    return 0
