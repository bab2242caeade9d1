"""Commands: import, split, evaluate_faq (isolated namespace) and evaluate_pairs."""
import csv
import json

import pytest
from django.core.management import CommandError, call_command

from faq.models import Faq
from faq.selectors import LIVE_CORPUS


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def test_it_imports_faqs_and_reports_bad_rows_by_number(db, tmp_path, capsys):
    path = write_csv(tmp_path / "faqs.csv", ["faq_id", "question", "answer"],
                     [["a", "How do I close my account?", "Write to us."], ["a", "Delete my account"], ["", "x", ""]])
    call_command("import_faqs", path)
    captured = capsys.readouterr()
    assert "1 FAQs created" in captured.out and "2 wordings added" in captured.out
    assert "row 4: faq_id is empty" in captured.err


def test_it_names_the_missing_column(db, tmp_path):
    path = write_csv(tmp_path / "faqs.csv", ["id", "question"], [["a", "b"]])
    with pytest.raises(CommandError, match="missing column.*faq_id"):
        call_command("import_faqs", path)


def test_it_splits_the_same_way_every_time(tmp_path):
    rows = [[f"question {n}", f"intent{n % 3}"] for n in range(200)]
    source = write_csv(tmp_path / "all.csv", ["question", "faq_id"], rows)
    outputs = []
    for attempt in range(2):
        train, test = tmp_path / f"train{attempt}.csv", tmp_path / f"test{attempt}.csv"
        call_command("split_csv", source, "--key", "question", "--train-out", str(train), "--test-out", str(test))
        outputs.append((train.read_text(), test.read_text()))
    assert outputs[0] == outputs[1]
    held_out = outputs[0][1].count("\n") - 1
    assert 20 < held_out < 60 and held_out + outputs[0][0].count("\n") - 1 == 200


def test_it_evaluates_a_library_without_touching_the_live_faqs(faq_library, tmp_path, capsys):
    from embeddings.models import Vector

    live_vectors = Vector.objects.filter(corpus=LIVE_CORPUS).count()
    library = write_csv(tmp_path / "library.csv", ["faq_id", "question"], [
        ["phone", "如何修改绑定的手机号码"], ["shipping", "订单超过48小时未发货怎么办"],
        ["hours", "What are your opening hours?"],
    ])
    queries = write_csv(tmp_path / "queries.csv", ["question", "faq_id"], [
        ["怎么换绑手机号?", "phone"], ["买了东西两天了怎么还不发快递?", "shipping"],
        ["What is the weather on Mars?", ""],
    ])
    call_command("evaluate_faq", "--library", library, "--queries", queries, "--json")
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 3 and result["top1"] == 1.0 and result["top3"] == 1.0
    assert 0 < result["answered"] <= 1 and result["answered_precision"] == 1.0
    assert result["escalated_when_expected"] == 1.0
    assert 0 < result["calibrated_cosine_rule"][""]["cosine"] <= 1
    assert Faq.objects.count() == len(faq_library)
    assert Vector.objects.filter(corpus=LIVE_CORPUS).count() == live_vectors
    assert Vector.objects.count() == live_vectors


def test_it_calibrates_and_evaluates_pair_similarity(db, tmp_path, capsys):
    pairs = [["怎么换绑手机号", "如何修改绑定的手机号码", 1], ["花呗怎么还款", "如何修改绑定的手机号码", 0],
             ["借呗可以提前还吗", "借呗能不能提前还款", 1], ["借呗可以提前还吗", "花呗账单在哪里看", 0]]
    path = write_csv(tmp_path / "pairs.csv", ["sentence1", "sentence2", "label"], pairs)
    call_command("evaluate_pairs", path, "--calibrate", path, "--json")
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"n", "accuracy", "f1", "threshold"}
    assert result["n"] == 4 and result["accuracy"] == 1.0 and result["f1"] == 1.0


def test_it_rejects_a_pair_label_that_is_not_0_or_1(db, tmp_path):
    path = write_csv(tmp_path / "pairs.csv", ["sentence1", "sentence2", "label"], [["a", "b", "yes"]])
    with pytest.raises(CommandError, match="row 2: label must be 0 or 1"):
        call_command("evaluate_pairs", path)


def test_it_measures_the_reranker_stage_when_one_is_configured(db, settings, tmp_path, capsys):
    from tests.support.reranker_double import run_reranker_double

    library = write_csv(tmp_path / "library.csv", ["faq_id", "question"], [
        ["phone", "如何修改绑定的手机号码"], ["shipping", "订单超过48小时未发货怎么办"],
        ["hours", "What are your opening hours?"],
    ])
    queries = write_csv(tmp_path / "queries.csv", ["question", "faq_id"], [
        ["怎么换绑手机号?", "phone"], ["What are your opening hours on Sunday?", "hours"],
    ])
    with run_reranker_double() as reranker:
        settings.RERANKER_BASE_URL = reranker.base_url
        call_command("evaluate_faq", "--library", library, "--queries", queries, "--json")
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["reranker"] == settings.RERANKER_MODEL and result["reranked"] == 1.0
    assert [request["query"] for request in reranker.requests] == ["怎么换绑手机号?",
                                                                   "What are your opening hours on Sunday?"]
    assert all(len(request["documents"]) == 3 for request in reranker.requests)  # every FAQ of this small library
