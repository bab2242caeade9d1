"""`python -m bench all [--update-readme]`: run every benchmark, collect their JSON lines, table the figures.

Each benchmark module present (embed, ingest, knn, pipeline, faq) runs as its own
subprocess (`python -m bench NAME --json`), so one's memory or crash cannot affect
another's figures. The results table (machine, date, figure, floor, ratio) is printed,
and with --update-readme it replaces what is between `<!-- bench:start -->` and
`<!-- bench:end -->` in README.md; nothing else in the README is written.

A benchmark reports its table rows as `figures`: a list of objects with `figure`
(what is measured, with its unit), `value`, `floor_name`, `floor` and `ratio`
(figure / floor, or floor / figure for latencies: always "higher is better").
A benchmark without `figures` gets one row per top-level number it printed.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from .common import REPOSITORY_ROOT, machine_description

BENCHMARKS = ("embed", "ingest", "knn", "pipeline", "faq")
README = REPOSITORY_ROOT / "README.md"
START_MARKER = "<!-- bench:start -->"
END_MARKER = "<!-- bench:end -->"


def available_benchmarks() -> list[str]:
    return [name for name in BENCHMARKS if (Path(__file__).parent / f"{name}.py").exists()]


def run_benchmark(name: str, *, extra_arguments: list[str], timeout: float) -> dict:
    """Run one benchmark as a subprocess; its last stdout line is its JSON result."""
    command = [sys.executable, "-m", "bench", name, "--json", *extra_arguments]
    print(f"[all] running {' '.join(command[2:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        completed = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"benchmark": name, "error": f"did not finish within {timeout:.0f}s"}
    seconds = time.monotonic() - started
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode != 0 or not lines:
        last_error = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {"benchmark": name, "error": f"exit status {completed.returncode}: {last_error[:300]}"}
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"benchmark": name, "error": f"last line is not JSON: {lines[-1][:200]}"}
    result.setdefault("benchmark", name)
    result["wall_seconds"] = round(seconds, 1)
    return result


# Benchmarks that print their figure and floor as top-level keys instead of `figures`:
# name -> (figure, its key, floor name, its key, ratio key).
TOP_LEVEL_FIGURES = {
    "pipeline": ("pipeline: items/s from import to verdict (protocol double, {vectors} vectors, "
                 "`HS_SEARCH_EF` {hs_search_ef})", "items_per_s",
                 "raw batched kNN items/s", "knn_floor_items_per_s", "ratio_to_floor"),
    "faq": ("faq: match API requests/s at 20 clients (protocol double; p50 {p50_ms} ms, p95 {p95_ms} ms)", "rps",
            "GET /ask/ requests/s, same server and clients", "floor_rps", "ratio_to_floor"),
}


def figure_rows(result: dict) -> list[dict]:
    name = result.get("benchmark", "?")
    if name in TOP_LEVEL_FIGURES and "figures" not in result and "error" not in result:
        figure, key, floor_name, floor_key, ratio_key = TOP_LEVEL_FIGURES[name]
        if key in result:
            with contextlib.suppress(KeyError, ValueError):
                figure = figure.format_map(result)
            return [{"figure": figure, "value": result[key], "floor_name": floor_name,
                     "floor": result.get(floor_key), "ratio": result.get(ratio_key)}]
    if "error" in result:
        return [{"figure": f"{name}: FAILED ({result['error']})", "value": None, "floor_name": "", "floor": None,
                 "ratio": None}]
    if isinstance(result.get("figures"), list) and result["figures"]:
        return result["figures"]
    skipped = {"wall_seconds", "peak_rss_mib"}
    return [
        {"figure": f"{name} {key}", "value": value, "floor_name": "", "floor": None, "ratio": None}
        for key, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in skipped
    ]


def format_number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def results_table(results: list[dict], *, machine: str, date: str) -> str:
    lines = ["| machine | date | figure | floor | ratio |", "|---|---|---|---|---|"]
    for result in results:
        for row in figure_rows(result):
            figure = f"{row['figure']}: **{format_number(row.get('value'))}**" if row.get("value") is not None \
                else row["figure"]
            floor = f"{row.get('floor_name') or 'floor'}: {format_number(row.get('floor'))}" \
                if row.get("floor") is not None else "—"
            ratio = format_number(row.get("ratio"))
            cells = [machine, date, figure, floor, ratio]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def replace_marked_region(text: str, table: str) -> str:
    """README text with the region between the markers replaced; ValueError when the markers are missing."""
    start = text.find(START_MARKER)
    end = text.find(END_MARKER, start + len(START_MARKER)) if start >= 0 else -1
    if start < 0 or end < 0:
        raise ValueError(f"README.md has no {START_MARKER} ... {END_MARKER} region to write the table into")
    return text[: start + len(START_MARKER)] + "\n" + table + "\n" + text[end:]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench all", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--update-readme", action="store_true", help="rewrite the README's benchmark table")
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    parser.add_argument("--knn-sizes", default="100000,1000000",
                        help="passed to knn --sizes (default 100000,1000000: the 1M corpus and its index are built "
                             "on the first run, about half an hour on 2 cores, and kept in database bench_knn)")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds allowed per benchmark (default 7200)")
    arguments = parser.parse_args(argv)
    names = available_benchmarks()
    if arguments.only:
        wanted = set(arguments.only.split(","))
        names = [name for name in names if name in wanted]
    extra = {"knn": ["--sizes", arguments.knn_sizes]}
    results = [run_benchmark(name, extra_arguments=extra.get(name, []), timeout=arguments.timeout) for name in names]
    machine = machine_description()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    table = results_table(results, machine=machine, date=date)
    if not arguments.json:
        print(table)
    failed = [result["benchmark"] for result in results if "error" in result]
    if arguments.update_readme:
        try:
            README.write_text(replace_marked_region(README.read_text(encoding="utf-8"), table), encoding="utf-8")
        except ValueError as error:
            print(f"[all] {error}; the table above was not written", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"[all] README.md table updated ({len(results)} benchmarks)", file=sys.stderr)
    print(json.dumps({"benchmark": "all", "machine": machine, "date": date, "ran": names, "failed": failed,
                      "results": results}, ensure_ascii=False, default=float))
    if failed:
        raise SystemExit(1)
