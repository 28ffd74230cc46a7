"""The report: ours ÷ each peer, the physical limit, the printed table, and ``--merge``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OURS = "jen1"


def physical_limit(ours: dict[str, Any], peak: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Our generation's FLOPs against the measured matmul ceiling."""
    flops = ours["flops"]["total"]
    gen_seconds = sum(s["seconds"] for s in ours["stages"].values())
    den = ours["stages"]["denoising"]
    achieved = flops / gen_seconds
    return {
        "generation_flops": flops,
        "flops_breakdown": ours["flops"],
        "generation_seconds": gen_seconds,
        "generation_seconds_extrapolated": any(s["extrapolated"] for s in ours["stages"].values()),
        "achieved_flops_per_second": achieved,
        "matmul_flops_per_second": peak["flops_per_second"],
        "fraction_of_matmul_peak": achieved / peak["flops_per_second"],
        "denoising_fraction_of_matmul_peak": (
            ours["flops"]["unet_total"] / den["seconds"] / peak["flops_per_second"]
        ),
        "seconds_per_audio_second_at_peak": flops / peak["flops_per_second"] / seconds,
    }


def total_per_second(model: dict[str, Any], key: str = "per_audio_second") -> float:
    return sum(s[key] for s in model["stages"].values())


def headline(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ours ÷ each peer, in total compute seconds per audio second (below 1 = ours is faster).

    The wall-time ratio is the headline; the CPU-time one (all threads) is less sensitive to other
    work sharing the machine.
    """
    ours = models.get(OURS)
    if not ours or "stages" not in ours:
        return {}
    mine, mine_cpu = total_per_second(ours), total_per_second(ours, "cpu_per_audio_second")
    out = {}
    for name, m in models.items():
        if name == OURS or "stages" not in m:
            continue
        theirs, theirs_cpu = total_per_second(m), total_per_second(m, "cpu_per_audio_second")
        out[name] = {
            "ours_over_peer": mine / theirs,
            "peer_over_ours": theirs / mine,
            "ours_per_audio_second": mine,
            "peer_per_audio_second": theirs,
            "ours_over_peer_cpu_time": mine_cpu / theirs_cpu if theirs_cpu else None,
            "extrapolated": any(
                st["extrapolated"] for x in (ours, m) for st in x["stages"].values()
            ),
        }
    return out


def _gb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e9:.2f} GB"


def _si(x: float, unit: str) -> str:
    """1.23e12 -> '1.23 TFLOP'."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def peak_memory(model: dict[str, Any]) -> int | None:
    mem = model["memory"]
    return mem.get("cuda_max_allocated_bytes", mem.get("cpu_rss_peak_minus_before_build_bytes"))


def format_table(report: dict[str, Any]) -> str:
    """The human-readable summary printed to stdout."""
    s, m = report["settings"], report["machine"]
    on_cpu = not s["device"].startswith("cuda")
    where = m["gpu"] or f"{m['cpu']}, {m['torch_threads']} torch threads"
    lines = [
        f"Generation speed for {s['seconds']:g} s of audio on {s['device']} ({where}), "
        f"{s['dtype']}{', TINY configs' if s['tiny'] else ''}",
        "seconds of compute per second of audio; * = extrapolated from timed steps / tokens / "
        "decoded seconds (each stage's 'method' in the JSON says how)",
        "",
    ]
    head = (
        f"{'model':<19}{'params':>8}{'text enc':>11}{'denoise/gen':>13}{'decode':>10}"
        f"{'total':>10}{'ours/peer':>11}"
    )
    if on_cpu:
        head += f"{'cpu total':>11}{'cpu/wall':>9}"
    head += f"{'peak mem':>11}"
    lines += [head, "-" * len(head)]
    ratios = report["headline"]
    for name, r in report["models"].items():
        if "stages" not in r:
            lines.append(f"{name:<19} skipped: {r.get('skipped', r.get('error'))}")
            continue
        cells = []
        for key in ("text_encoding", "denoising", "decoding"):
            st = r["stages"][key]
            cells.append(f"{st['per_audio_second']:.4g}{'*' if st['extrapolated'] else ' '}")
        star = "*" if any(st["extrapolated"] for st in r["stages"].values()) else " "
        total = f"{total_per_second(r):.4g}{star}"
        ratio = f"{ratios[name]['ours_over_peer']:.3f}" if name in ratios else "-"
        name_cell = name + (" (m)" if "merged_from" in r else "")
        row = (
            f"{name_cell:<19}{r['params']['total'] / 1e6:>7.0f}M{cells[0]:>11}{cells[1]:>13}"
            f"{cells[2]:>10}{total:>10}{ratio:>11}"
        )
        if on_cpu:
            den = r["stages"]["denoising"]
            cpu_total = f"{total_per_second(r, 'cpu_per_audio_second'):.4g}{star}"
            ratio_cpu = den["cpu_over_wall"]
            row += f"{cpu_total:>11}{'n/a' if ratio_cpu is None else f'{ratio_cpu:.2f}':>9}"
        lines.append(row + f"{_gb(peak_memory(r)):>11}")
    lines.append("")
    notes = [
        "params: text encoder + generator (U-Net / LM decoder / DiT) + autoencoder, in millions.",
        "peak mem: "
        + (
            "process RSS high-water mark (reset after each build) minus RSS before the build."
            if on_cpu
            else "torch.cuda.max_memory_allocated during generation (weights included)."
        ),
    ]
    if on_cpu:
        load = [
            x[0] if x else float("nan")
            for x in (m.get("load_average_start"), report.get("load_average_end"))
        ]
        notes.append(
            "cpu total: process CPU seconds (all threads) per audio second; cpu/wall during "
            f"denoising is ~{m['torch_threads']} when nothing else competes for the cores "
            f"(1-min load average: {load[0]:.2f} at the start, {load[1]:.2f} at the end)."
        )
        busy = [
            f"{name} ({r['stages']['denoising']['cpu_over_wall']:.2f})"
            for name, r in report["models"].items()
            if "stages" in r
            and (r["stages"]["denoising"]["cpu_over_wall"] or 0) < 0.75 * m["torch_threads"]
        ]
        if busy:
            notes.append(
                "WARNING: other work shared the cores while timing "
                + ", ".join(busy)
                + ": cpu/wall well under the thread count, so those wall times are inflated."
            )
    if any("merged_from" in r for r in report["models"].values()):
        notes.append("(m) = measured in an earlier run on this machine (--merge).")
    lines += notes
    for name, r in report["models"].items():
        if "stages" in r:
            p = r["params"]
            lines.append(
                f"  {name}: text {p['text_encoder'] / 1e6:.1f} M, generator "
                f"{p['generator'] / 1e6:.1f} M, autoencoder {p['autoencoder'] / 1e6:.1f} M"
            )
    sao = report["models"].get("stable-audio-open", {})
    if "denoising_at_clip_length" in sao:
        c = sao["denoising_at_clip_length"]
        lines.append(
            f"stable-audio-open denoises its whole {sao['config']['window_seconds']:.2f} s window "
            f"for any request; at the clip's own {c['frames']} latent frames its DiT would cost "
            f"{c['per_audio_second']:.4g} s per audio second instead of "
            f"{sao['stages']['denoising']['per_audio_second']:.4g}."
        )
    if ratios:
        lines.append("")
    for name, h in ratios.items():
        faster = h["ours_over_peer"] < 1
        factor = h["peer_over_ours"] if faster else h["ours_over_peer"]
        cpu = h["ours_over_peer_cpu_time"]
        lines.append(
            f"ours vs {name}: ours/peer = {h['ours_over_peer']:.3f} -> ours is {factor:.2f}x "
            f"{'faster' if faster else 'slower'}"
            + (f" (by CPU time: ours/peer = {cpu:.3f})" if on_cpu and cpu else "")
            + (" [extrapolated]" if h["extrapolated"] else "")
        )
    lim = report.get("physical_limit")
    if lim:
        pk = report["models"][OURS].get("matmul_peak", report["matmul_peak"])
        fl = lim["flops_breakdown"]
        lines += [
            "",
            f"physical limit: one {s['seconds']:g} s JEN-1 generation = "
            f"{_si(lim['generation_flops'], 'FLOP')} (U-Net {_si(fl['unet_total'], 'FLOP')}, "
            f"text encoder {_si(fl['text_encoder'], 'FLOP')}, "
            f"decoder {_si(fl['decoder'], 'FLOP')})",
            f"  measured matmul ({pk['n']}x{pk['n']}, {pk['dtype']}): "
            f"{_si(pk['flops_per_second'], 'FLOP/s')}; our generation achieves "
            f"{_si(lim['achieved_flops_per_second'], 'FLOP/s')} = "
            f"{100 * lim['fraction_of_matmul_peak']:.1f} % of it (denoising alone "
            f"{100 * lim['denoising_fraction_of_matmul_peak']:.1f} %)"
            + (" [extrapolated times]" if lim["generation_seconds_extrapolated"] else ""),
            f"  at that matmul rate a generation would take "
            f"{lim['seconds_per_audio_second_at_peak']:.4g} s per audio second",
        ]
    return "\n".join(lines)


def merge_earlier(report: dict[str, Any], path: Path, running: list[str]) -> None:
    """Copy the models of an earlier report (same machine and settings) that this run skips.

    On a small CPU one process may not have time for every model; this lets the runs be split
    while the ratios still come out in one report.
    """
    earlier = json.loads(path.read_text())
    # How many steps were timed may differ (each model's 'method' says); what is measured may not.
    keys = ("seconds", "device", "dtype", "tiny")
    diff = [k for k in keys if earlier["settings"].get(k) != report["settings"].get(k)]
    if earlier["machine"].get("cpu") != report["machine"]["cpu"]:
        diff.append("machine cpu")
    if earlier["machine"].get("gpu") != report["machine"]["gpu"]:
        diff.append("machine gpu")
    if diff:
        raise SystemExit(f"--merge {path}: different {', '.join(diff)}; rerun instead")
    for name, result in earlier["models"].items():
        if name not in running and name not in report["models"]:
            report["models"][name] = {"merged_from": str(path), **result}  # keep the first
    report["merged_from"] = str(path)
