"""What the apps register with the embedding layer at start-up, and what it makes of it (no database)."""
from __future__ import annotations

import pytest

from embeddings.profiles import E5_SMALL, QWEN3, default_thresholds_for
from embeddings.registry import PAIR_TASK, get_task, golden_sets


def test_the_apps_register_their_tasks_and_the_profile_writes_their_instructions():
    assert {get_task("hs_code").name, get_task("faq").name, get_task(PAIR_TASK).name} == {"hs_code", "faq", "pair"}
    instruction = get_task("hs_code").instruction
    assert QWEN3.query_text("无线蓝牙耳机", "hs_code") == f"Instruct: {instruction}\nQuery:无线蓝牙耳机"
    assert E5_SMALL.query_text("无线蓝牙耳机", "hs_code") == "无线蓝牙耳机"  # e5's server adds its own prefix


def test_an_unregistered_task_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown embedding task 'tariff'; known: \['faq', 'hs_code', 'pair'\]"):
        get_task("tariff")


def test_default_thresholds_are_those_registered_for_the_model_family():
    e5 = default_thresholds_for("multilingual-e5-small-q4")
    qwen = default_thresholds_for("Qwen/Qwen3-Embedding-8B")
    assert (e5["faq"], e5["pair"], e5["hs_novelty"], e5["hs_auto_pass"]) == (0.88, 0.90, 0.82, 0.55)
    assert (qwen["faq"], qwen["pair"], qwen["hs_novelty"]) == (0.62, 0.80, 0.45)


def test_each_app_registers_one_golden_set_in_app_order():
    assert [golden_set.task for golden_set in golden_sets()] == ["hs_code", "faq"]
