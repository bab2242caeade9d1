"""Normalisation of descriptions before embedding, and the reasons a description cannot be judged."""
from __future__ import annotations

from verifier.normalization import meaningless_reason, normalize_description


def test_it_folds_full_width_letters_digits_and_spaces_to_half_width():
    assert normalize_description("ＢＬＵＥＴＯＯＴＨ　耳机　２０ｋｇ") == "bluetooth 耳机 20 kg"


def test_it_separates_numbers_from_units_and_folds_unit_spellings():
    assert normalize_description("冷冻爬行动物肉 20kg/箱") == "冷冻爬行动物肉 20 kg/箱"
    assert normalize_description("Rice 25KGS bag") == "rice 25 kg bag"
    assert normalize_description("食用油 5公斤") == "食用油 5 kg"


def test_it_keeps_the_limits_that_split_subheadings():
    assert normalize_description("Duck breeding stock live ≤185g") == "duck breeding stock live ≤185 g"


def test_it_drops_stray_symbols_and_collapses_whitespace_and_repeats():
    assert normalize_description("  ***Wireless™   earphones!!!  \t\n®") == "wireless earphones!"


def test_it_applies_glossary_terms_as_whole_words_only():
    glossary = {"BT": "bluetooth", "耳麦": "耳机"}
    assert normalize_description("BT earphone, BTX cable", glossary=glossary) == "bluetooth earphone, btx cable"
    assert normalize_description("无线耳麦", glossary=glossary) == "无线耳机"


def test_it_keeps_a_plain_description_as_it_is():
    assert normalize_description("frozen shrimps, peeled") == "frozen shrimps, peeled"


def test_it_gives_a_reason_for_empty_symbol_only_placeholder_and_too_short_descriptions():
    assert "empty" in meaningless_reason("   ")
    assert "no words" in meaningless_reason("123 // ###")
    assert "placeholder" in meaningless_reason("N/A")
    assert "placeholder" in meaningless_reason("货物")
    assert "too short" in meaningless_reason("x1")


def test_it_finds_nothing_wrong_with_short_but_real_descriptions():
    assert meaningless_reason("鸭") is None
    assert meaningless_reason("Turkey") is None


def test_the_meaningless_check_reads_the_text_that_is_searched_product_name_included():
    from verifier.normalization import searchable_description

    named = searchable_description("N/A", product_name="Bluetooth headset")
    assert named.unsearchable_reason is None and named.text == "bluetooth headset n/a"
    unnamed = searchable_description("N/A")
    assert unnamed.text == "" and "placeholder" in unnamed.unsearchable_reason
    assert searchable_description("headset", product_name="Headset").text == "headset"  # the name adds no words
