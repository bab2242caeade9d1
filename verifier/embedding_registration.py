"""What verification tells the embedding layer at start-up (VerifierConfig.ready): its task, corpora, thresholds
and golden texts. The embedding layer knows no domain; this is where it learns about HS codes."""
from __future__ import annotations

from functools import partial

from embeddings.corpora import Corpus, register_corpus
from embeddings.registry import GoldenSet, Task, register_default_thresholds, register_golden_set, register_task

HS_TASK = Task(
    name="hs_code",
    instruction="Given a customs declaration product description, retrieve the most similar product descriptions "
                "and tariff nomenclature entries",
)
# hs_*: calibrated on the hsbench dev files (zh+en; check mode on a make_check_set file, seed 2) with
# `calibrate_thresholds --labelled`: each gate's 95% lower bound of precision at its target; see README.
DEFAULT_THRESHOLDS = {
    "multilingual-e5": {
        "hs_novelty": 0.82, "hs_auto_pass": 0.55, "hs_review_margin": 0.0, "hs_min_similarity": 0.89,
        "hs_check_min_declared_share": 0.1, "hs_check_min_similarity": 0.84,
        "hs_contradiction_chapter_gap": 0.035, "hs_contradiction_heading_gap": 0.045,
    },
    "qwen3-embedding": {"hs_novelty": 0.45},
}
PRODUCTS = (
    "Bluetooth earphone without cable",
    "Cotton T-shirt for men",
    "Stainless steel bolts M8",
    "Frozen peeled shrimp",
    "Laptop computer with 15 inch screen",
    "Red wine in bottles",
)
# Chinese descriptions and the English product each one describes (cross-lingual, as declarations are).
PRODUCT_DESCRIPTIONS = {
    "无线蓝牙耳机": "Bluetooth earphone without cable",
    "男士纯棉T恤": "Cotton T-shirt for men",
    "不锈钢螺栓": "Stainless steel bolts M8",
    "冷冻去壳虾仁": "Frozen peeled shrimp",
    "笔记本电脑": "Laptop computer with 15 inch screen",
    "瓶装红葡萄酒": "Red wine in bottles",
}


def register_with_embeddings() -> None:
    from .models import KNOWLEDGE_CORPUS, KNOWLEDGE_CORPUS_CJK
    from .selectors import knowledge_texts_after

    register_task(HS_TASK)
    for family, thresholds in DEFAULT_THRESHOLDS.items():
        register_default_thresholds(model_family=family, thresholds=thresholds)
    register_golden_set(GoldenSet(task=HS_TASK.name, queries=PRODUCT_DESCRIPTIONS, documents=PRODUCTS))
    register_corpus(Corpus(name=KNOWLEDGE_CORPUS, fetch_texts=partial(knowledge_texts_after, cjk=False)))
    register_corpus(Corpus(name=KNOWLEDGE_CORPUS_CJK, fetch_texts=partial(knowledge_texts_after, cjk=True)))
