"""`python -m bench all` writes only the README's marked region and shows failures as rows."""
from __future__ import annotations

import pytest

from bench.all import END_MARKER, START_MARKER, replace_marked_region, results_table


def test_it_rewrites_only_the_region_between_the_markers():
    readme = f"# Title\nintro\n{START_MARKER}\n| old | table |\n{END_MARKER}\n## Operations\nkeep me\n"
    updated = replace_marked_region(readme, "| new | table |")
    assert updated == f"# Title\nintro\n{START_MARKER}\n| new | table |\n{END_MARKER}\n## Operations\nkeep me\n"


def test_it_refuses_to_write_a_readme_without_markers():
    with pytest.raises(ValueError, match="bench:start"):
        replace_marked_region("# Title\nno table here\n", "| new | table |")


def test_it_tables_each_figure_beside_its_floor_and_ratio():
    results = [{"benchmark": "ingest", "figures": [
        {"figure": "ingest rows/s", "value": 2500, "floor_name": "raw COPY rows/s", "floor": 100000, "ratio": 0.025},
    ]}]
    table = results_table(results, machine="test machine", date="2026-11-23").splitlines()
    assert table[0] == "| machine | date | figure | floor | ratio |"
    assert table[2] == "| test machine | 2026-11-23 | ingest rows/s: **2,500** | raw COPY rows/s: 100,000 | 0.025 |"


def test_it_shows_a_failed_benchmark_as_a_failed_row():
    table = results_table([{"benchmark": "faq", "error": "exit status 1: boom"}], machine="m", date="d")
    assert "faq: FAILED (exit status 1: boom)" in table


def test_it_tables_a_benchmark_that_prints_its_figure_and_floor_as_top_level_keys():
    result = {"benchmark": "pipeline", "items_per_s": 410, "knn_floor_items_per_s": 2050, "ratio_to_floor": 0.2}
    row = results_table([result], machine="m", date="d").splitlines()[2]
    assert "items/s from import to verdict" in row and "**410**" in row and "2,050" in row and "| 0.2 |" in row


def test_it_tables_the_faq_row_with_the_cpu_of_each_process():
    from bench.faq import match_figure

    level = {"clients": 20, "rps": 300.0, "p50_ms": 50.1, "p95_ms": 90.2, "web_cpu_ms_per_request": 3.5,
             "double_cpu_ms_per_request": 0.4}
    result = {"benchmark": "faq", "rps": 300.0, "floor_rps": 800.0, "ratio_to_floor": 0.375,
              "figures": [{"figure": match_figure(level), "value": 300.0, "floor_name": "GET /ask/ requests/s",
                           "floor": 800.0, "ratio": 0.375}]}
    row = results_table([result], machine="m", date="d").splitlines()[2]
    assert "faq: match API requests/s at 20 clients" in row
    assert "web CPU 3.5 ms/request, double CPU 0.4 ms/request" in row and "**300**" in row and "| 0.375 |" in row
