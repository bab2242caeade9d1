"""What a reviewer sees of a verdict: the declared code against the evidence level by level, the alternatives,
the disagreement in words, tiers in colour, and a review form that makes the reviewer choose."""
from __future__ import annotations

import copy
import re

import pytest
from django.contrib.auth.models import Group

from faq.models import FaqClassifier
from verifier.models import HsCode, KnowledgeEntry, Review, Verdict
from verifier.presentation import TIER_COLOURS, alternative_rows, anomaly_rows, level_comparison, neighbour_row

from .factories import make_hs_code, make_item, make_verdict

CONTRADICTION_REASON = ("the closest line under the declared chapter 03 is 0.080 less similar than the closest "
                        "evidence of all; 03 holds 0% of the chapter vote against 60% for 85")
FROZEN_TUNA_LINE = {"entry_id": 11, "code": "030487", "source": "declared_2", "language": "en", "score": 0.8321,
                    "text": "Frozen fillets of tuna"}
# A hair dryer declared as frozen tuna fillets (030487), as check mode stores it: worked by hand.
HAIR_DRYER_EVIDENCE = {
    "neighbours": [
        {"entry_id": 21, "code": "851631", "source": "nomenclature", "language": "en", "score": 0.9121,
         "text": "Hair dryers"},
        {"entry_id": 22, "code": "851632", "source": "nomenclature", "language": "en", "score": 0.8744,
         "text": "Other hair-dressing apparatus"},
    ],
    "alternatives": [{"code": "851631", "share": 0.55}, {"code": "851632", "share": 0.3}],
    "declared_share": 0.0,
    "path": ["85", "8516", "851631"],
    "by_level": {"2": [{"code": "85", "share": 0.6}, {"code": "84", "share": 0.25}],
                 "4": [{"code": "8516", "share": 0.7}, {"code": "8509", "share": 0.2}],
                 "6": [{"code": "851631", "share": 0.55}, {"code": "851632", "share": 0.3}]},
    "declared_support": [
        {"level": 2, "declared": "03", "declared_share": 0.0, "best": "85", "best_share": 0.6,
         "similarity_gap": 0.08, "closest_line": FROZEN_TUNA_LINE},
        {"level": 4, "declared": "0304", "declared_share": 0.0, "best": "8516", "best_share": 0.7,
         "similarity_gap": 0.08, "closest_line": FROZEN_TUNA_LINE},
        {"level": 6, "declared": "030487", "declared_share": 0.0, "best": "851631", "best_share": 0.55,
         "similarity_gap": 0.08, "closest_line": FROZEN_TUNA_LINE},
    ],
}


def hair_dryer_evidence() -> dict:
    return copy.deepcopy(HAIR_DRYER_EVIDENCE)


# --- the comparison, without HTTP ----------------------------------------------------------------------

def test_it_sets_the_declared_code_against_the_evidences_best_at_each_level():
    rows = level_comparison(evidence=hair_dryer_evidence(), declared_code="030487")

    assert [(row.name, row.declared, row.declared_share_text, row.best, row.best_share_text) for row in rows] == [
        ("chapter", "03", "0%", "85", "60%"),
        ("heading", "0304", "0%", "8516", "70%"),
        ("subheading", "030487", "0%", "851631", "55%"),
    ]
    assert all(row.disagrees and not row.agrees for row in rows)
    assert rows[0].closest_line.text == "Frozen fillets of tuna" and rows[0].closest_line.similarity_text == "0.83"
    assert rows[0].gap_text == "0.08 less similar than the closest line of all"


def test_it_marks_the_levels_where_the_declared_code_is_the_evidences_best():
    evidence = {"declared_support": [
        {"level": 2, "declared": "85", "declared_share": 0.9, "best": "85", "best_share": 0.9, "similarity_gap": 0.0,
         "closest_line": {"entry_id": 3, "code": "851713", "source": "declared_2", "language": "en",
                          "score": 0.93, "text": "Smartphones"}},
        {"level": 4, "declared": "8517", "declared_share": 0.4, "best": "8507", "best_share": 0.5,
         "similarity_gap": 0.0, "closest_line": None},
    ]}

    chapter, heading = level_comparison(evidence=evidence, declared_code="8517")

    assert chapter.agrees and not chapter.disagrees and chapter.gap_text == "the closest line of all"
    assert heading.disagrees and (heading.declared_share_text, heading.best_share_text) == ("40%", "50%")


def test_it_says_when_no_knowledge_line_lies_under_the_declared_code():
    evidence = {"declared_support": [{"level": 2, "declared": "03", "declared_share": 0.0, "best": "85",
                                      "best_share": 0.6, "similarity_gap": 2.0, "closest_line": None}]}

    (chapter,) = level_comparison(evidence=evidence, declared_code="03")

    assert chapter.no_line_under_declared and chapter.closest_line is None
    assert chapter.gap_text == "no knowledge line under 03"


def test_without_the_declared_codes_own_support_it_reads_the_kept_candidates_of_each_level():
    # Suggest mode keeps no declared_support: the declared code's share is known only among the kept candidates.
    evidence = {"by_level": {"2": [{"code": "85", "share": 0.8}], "4": [{"code": "8518", "share": 0.6},
                                                                        {"code": "8517", "share": 0.3}],
                             "6": [{"code": "851830", "share": 0.7}]}}

    rows = level_comparison(evidence=evidence, declared_code="851762")

    assert [(row.declared, row.declared_share_text, row.best, row.best_share_text, row.gap_text) for row in rows] == [
        ("85", "80%", "85", "80%", ""), ("8517", "30%", "8518", "60%", ""), ("851762", "—", "851830", "70%", ""),
    ]


def test_a_declared_heading_leaves_the_subheading_to_the_evidence_alone():
    evidence = hair_dryer_evidence()
    evidence["declared_support"] = evidence["declared_support"][:2]

    rows = level_comparison(evidence=evidence, declared_code="0304")

    assert (rows[2].name, rows[2].declared, rows[2].best, rows[2].disagrees) == ("subheading", "", "851631", False)


def test_evidence_without_levels_and_no_declared_code_gives_no_rows():
    assert level_comparison(evidence={"neighbours": HAIR_DRYER_EVIDENCE["neighbours"]}, declared_code="") == []


def test_alternatives_carry_their_own_nomenclature_text_where_it_is_known():
    descriptions = {"851631": [("85", "[en] Electrical machinery"), ("8516", "[en] Electric heaters"),
                               ("851631", "[en] Hair dryers")],
                    "851632": [("85", "[en] Electrical machinery")]}

    rows = alternative_rows(evidence=hair_dryer_evidence(), descriptions=descriptions)

    assert [(row.code, row.share_text, row.description) for row in rows] == [
        ("851631", "55%", "[en] Hair dryers"), ("851632", "30%", ""),
    ]


def test_the_disagreement_with_the_declared_code_comes_first_and_in_words():
    disagreements, others = anomaly_rows([
        {"code": "weak_evidence", "reason": "best similarity 0.801"},
        {"code": "declared_code_unconfirmed", "reason": "the vote chooses heading 8516, not the declared 0304"},
        {"code": "declared_code_contradicted", "reason": CONTRADICTION_REASON},
    ])

    assert [(row.title, row.reason) for row in disagreements] == [
        ("The evidence contradicts the declared code", CONTRADICTION_REASON),
        ("The evidence does not confirm the declared code", "the vote chooses heading 8516, not the declared 0304"),
    ]
    assert [(row.title, row.reason) for row in others] == [("Weak evidence", "best similarity 0.801")]


def test_the_admin_names_its_models_in_plain_english():
    assert HsCode._meta.verbose_name_plural == "HS codes"
    assert KnowledgeEntry._meta.verbose_name_plural == "knowledge entries"
    assert FaqClassifier._meta.verbose_name_plural == "FAQ classifiers"


# --- the pages, as a Reviewer ---------------------------------------------------------------------------

@pytest.fixture
def reviewer(django_user_model):
    """A staff member in the Reviewers group (the migrations' rights), not a superuser."""
    user = django_user_model.objects.create_user(username="reviewer", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


@pytest.fixture
def contradicted_item():
    """A hair dryer declared as frozen tuna fillets, its verdict a warning on the contradicted declaration."""
    make_hs_code("030487", "Frozen fillets of tuna")
    make_hs_code("851631", "Hair dryers")
    item = make_item(description_raw="ionic hair dryer 2000 W", declared_code="030487")
    make_verdict(item=item, tier=Verdict.Tier.WARNING, recommended_code="851631", recommended_level=6,
                 confidence=0.5512, margin=0.2504, best_similarity=0.9121, risk=3.0,
                 anomalies=[{"code": "declared_code_contradicted", "reason": CONTRADICTION_REASON}],
                 evidence=hair_dryer_evidence())
    return item


def comparison_table(page: str) -> str:
    return re.search(r'<table id="level-comparison">.*?</table>', page, re.S).group(0)



@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/admin/verifier/declarationitem/{item}/change/", "/declarations/items/{item}/"])
def test_the_item_pages_show_the_contradicted_declaration_level_by_level(client, reviewer, contradicted_item, url):
    client.force_login(reviewer)

    page = client.get(url.format(item=contradicted_item.pk)).content.decode()

    table = comparison_table(page)
    assert re.search(r"chapter</td>\s*<td><code>03</code></td>\s*<td class=\"number\">0%</td>", table)
    assert "Frozen fillets of tuna" in table and ">0.83<" in table
    assert re.search(r"<code>85</code></td>\s*<td class=\"number\">60%</td>", table)
    assert table.count('class="disagrees"') == 3
    assert "The evidence contradicts the declared code" in page and CONTRADICTION_REASON in page
    assert f'data-tier="warning" style="background-color: {TIER_COLOURS[Verdict.Tier.WARNING]}"' in page
    assert "confidence 0.55 · margin 0.25 · best similarity 0.91" in page


@pytest.mark.django_db
def test_the_item_page_lists_alternatives_as_a_table_never_as_python_dicts(client, reviewer, contradicted_item):
    client.force_login(reviewer)

    page = client.get(f"/admin/verifier/declarationitem/{contradicted_item.pk}/change/").content.decode()

    alternatives = re.search(r'<table id="alternatives">.*?</table>', page, re.S).group(0)
    assert re.search(r"<code>851631</code></td><td class=\"number\">55%</td>\s*<td>\[en\] Hair dryers</td>",
                     alternatives)
    assert "<code>851632</code>" in alternatives and "30%" in alternatives
    assert "{&#x27;code&#x27;" not in page and "{'code'" not in page and "'share'" not in page


@pytest.mark.django_db
def test_the_item_page_escapes_the_evidence_text(client, reviewer, contradicted_item):
    evidence = hair_dryer_evidence()
    evidence["declared_support"][0]["closest_line"]["text"] = '<img src=x onerror="alert(1)">'
    Verdict.objects.filter(item=contradicted_item).update(
        evidence=evidence, anomalies=[{"code": "declared_code_contradicted", "reason": "<script>alert(2)</script>"}])
    client.force_login(reviewer)

    page = client.get(f"/admin/verifier/declarationitem/{contradicted_item.pk}/change/").content.decode()

    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "<script>alert(2)" not in page and "&lt;script&gt;alert(2)" in page


@pytest.mark.django_db
def test_the_review_queue_shows_each_tier_in_its_colour(client, reviewer):
    for tier in (Verdict.Tier.WARNING, Verdict.Tier.MANUAL_REVIEW, Verdict.Tier.AUTO_PASS):
        make_verdict(item=make_item(), tier=tier)
    client.force_login(reviewer)

    page = client.get("/admin/verifier/declarationitem/").content.decode()

    for tier, colour in TIER_COLOURS.items():
        assert f'data-tier="{tier}" style="color: {colour}"' in page


@pytest.mark.django_db
def test_the_review_form_preselects_no_action(client, reviewer, contradicted_item):
    client.force_login(reviewer)

    page = client.get(f"/admin/verifier/declarationitem/{contradicted_item.pk}/change/").content.decode()

    action_menu = re.search(r'<select name="action".*?</select>', page, re.S).group(0)
    assert "required" in action_menu.split(">", 1)[0]
    assert re.search(r'<option value="" selected>', action_menu)
    assert action_menu.count("selected") == 1


@pytest.mark.django_db
def test_the_review_form_refuses_a_review_without_an_action(client, reviewer, contradicted_item):
    client.force_login(reviewer)

    response = client.post(f"/admin/verifier/declarationitem/{contradicted_item.pk}/review/",
                           {"action": "", "code": "", "reason": "looks fine"}, follow=True)

    assert not Review.objects.exists()
    assert "Review not recorded: Choose an action." in response.content.decode()
    assert Verdict.objects.get(item=contradicted_item).reviewed is False


@pytest.mark.django_db
def test_the_review_form_records_the_action_the_reviewer_chose(client, reviewer, contradicted_item):
    client.force_login(reviewer)

    client.post(f"/admin/verifier/declarationitem/{contradicted_item.pk}/review/",
                {"action": Review.Action.ACCEPT_RECOMMENDATION, "code": "", "reason": "a hair dryer, not fish"})

    review = Review.objects.get(item=contradicted_item)
    assert (review.action, review.from_code, review.to_code, review.reviewer) == (
        Review.Action.ACCEPT_RECOMMENDATION, "030487", "851631", reviewer)


def test_a_prototype_among_the_evidence_is_named_in_words():
    row = neighbour_row({"entry_id": 0, "code": "8516", "source": "prototype", "language": "", "score": 0.8849,
                         "text": ""})

    assert (row["text"], row["score_text"]) == ("the average of the heading 8516's lines", "0.88")
