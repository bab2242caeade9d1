from __future__ import annotations

from collections import Counter

from verifier.check_sets import FAR, NEAR, declaration_key, declared_is_right, make_check_rows
from verifier.labelled import LabelledDescription


def labelled(identifier: str, code: str, language: str = "en") -> LabelledDescription:
    return LabelledDescription(row_number=1, identifier=identifier, description=f"goods {identifier}",
                               hs_code=code, language=language)


def twin_rows() -> list[LabelledDescription]:
    codes = ["0102", "0105", "0201", "0202", "8471", "8473", "8517", "8507", "9503", "9504"] * 2
    rows = []
    for number, code in enumerate(codes):
        rows += [labelled(f"item-{number}-zh", code, "zh"), labelled(f"item-{number}-en", code, "en")]
    return rows


def test_twins_with_one_id_stem_are_one_declaration():
    assert declaration_key("hsbench-4digit-12-zh") == declaration_key("hsbench-4digit-12-en") == "hsbench-4digit-12"
    assert declaration_key("ORDER-7") == "ORDER-7"


def test_it_makes_the_asked_share_of_declarations_wrong_half_near_half_far():
    checks = make_check_rows(twin_rows(), wrong_share=0.3, seed=3)

    declarations = {declaration_key(check.row.identifier): check for check in checks}
    kinds = Counter(check.wrong for check in declarations.values())
    assert kinds[NEAR] + kinds[FAR] == 6  # 30% of 20 declarations
    assert abs(kinds[NEAR] - kinds[FAR]) <= 1


def test_a_near_miss_keeps_the_chapter_and_changes_the_heading_and_a_far_one_changes_the_chapter():
    for check in make_check_rows(twin_rows(), wrong_share=1.0, seed=5):
        assert not declared_is_right(check.declared_code, check.row.hs_code)
        assert len(check.declared_code) == len(check.row.hs_code)
        if check.wrong == NEAR:
            assert check.declared_code[:2] == check.row.hs_code[:2]
        else:
            assert check.declared_code[:2] != check.row.hs_code[:2]


def test_twins_share_their_declared_code_and_the_same_seed_writes_the_same_set():
    first = make_check_rows(twin_rows(), wrong_share=0.5, seed=9)
    second = make_check_rows(twin_rows(), wrong_share=0.5, seed=9)

    assert [c.declared_code for c in first] == [c.declared_code for c in second]
    by_declaration: dict[str, set[str]] = {}
    for check in first:
        by_declaration.setdefault(declaration_key(check.row.identifier), set()).add(check.declared_code)
    assert all(len(codes) == 1 for codes in by_declaration.values())


def test_a_declared_code_is_judged_at_the_deepest_level_both_codes_have():
    assert declared_is_right("85176200", "851762")  # a national line under the right subheading
    assert declared_is_right("8517", "851762")
    assert not declared_is_right("851712", "851762")
    assert not declared_is_right("8507", "8517")


def test_make_check_set_writes_a_file_that_evaluate_hs_reads_as_a_check_file(tmp_path, db):
    import csv

    from django.core.management import call_command

    from verifier.labelled import read_labelled_csv

    labelled, out = tmp_path / "labelled.csv", tmp_path / "check.csv"
    with open(labelled, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "description", "hs_code", "language"])
        for row in twin_rows():
            writer.writerow([row.identifier, row.description, row.hs_code, row.language])

    call_command("make_check_set", str(labelled), "--wrong", "0.3", "--seed", "4", "--out", str(out))

    rows, bad_rows = read_labelled_csv(out)
    assert bad_rows == [] and len(rows) == 40
    wrong = {declaration_key(row.identifier) for row in rows if not declared_is_right(row.declared_code, row.hs_code)}
    assert len(wrong) == 6  # 30% of 20 declarations, twins together
