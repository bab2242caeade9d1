"""Per-language mean centring: the arithmetic, and means that follow traffic (real PostgreSQL)."""
import numpy as np
import pytest

from embeddings import centring
from embeddings.models import LanguageMean
from embeddings.store import active_space


def unit(rows) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_centring_removes_the_language_direction_so_translations_meet():
    # Each vector: a shared meaning part plus a strong language part.
    meaning = unit([[1, 0, 0, 0], [0, 1, 0, 0]])
    chinese_direction, english_direction = np.array([0, 0, 3, 0]), np.array([0, 0, 0, 3])
    chinese = unit(meaning + chinese_direction)
    english = unit(meaning + english_direction)
    raw_best = np.argmax(english @ chinese.T, axis=1)
    means = {"zh": chinese.mean(axis=0), "en": english.mean(axis=0)}
    centred_zh = centring.centre(chinese, ["zh", "zh"], means)
    centred_en = centring.centre(english, ["en", "en"], means)
    similarities = centred_en @ centred_zh.T
    assert list(np.argmax(similarities, axis=1)) == [0, 1]
    assert similarities[0, 0] > 0.99 and (english @ chinese.T)[0, 0] < 0.95
    assert raw_best.tolist() == [0, 1]  # same ranking here, but the cosines now say how alike they are


def test_a_language_without_a_mean_is_left_as_it_is():
    vectors = unit([[1, 2, 3], [3, 2, 1]])
    centred = centring.centre(vectors, ["en", "fr"], {"en": np.array([1, 0, 0], dtype=np.float32)})
    assert np.allclose(centred[1], vectors[1]) and not np.allclose(centred[0], vectors[0])
    assert np.allclose(np.linalg.norm(centred, axis=1), 1.0)


def test_a_mean_learned_from_too_few_vectors_is_not_used():
    means = {"zh": (np.ones(3), centring.MIN_SAMPLES), "en": (np.ones(3), centring.MIN_SAMPLES - 1)}
    assert set(centring.usable(means)) == {"zh"}


def test_mean_shift_is_the_largest_move_and_a_new_language_forces_one():
    old = {"zh": np.zeros(2), "en": np.zeros(2)}
    assert centring.mean_shift(old, {"zh": np.array([0.3, 0.4]), "en": np.zeros(2)}) == pytest.approx(0.5)
    assert centring.mean_shift(old, {"zh": np.zeros(2)}) == float("inf")


@pytest.mark.django_db
def test_traffic_moves_the_query_mean_as_a_running_average(monkeypatch):
    space = active_space()
    first = np.tile(np.array([1, 0, 0], dtype=np.float32), (4, 1))
    centring.learn_means(space=space, scope="s", side="query", vectors=first, languages=["en"] * 4)
    second = np.tile(np.array([0, 1, 0], dtype=np.float32), (4, 1))
    centring.learn_means(space=space, scope="s", side="query", vectors=second, languages=["en"] * 4)
    mean, count = centring.language_means(space=space, scope="s", side="query")["en"]
    assert count == 8 and np.allclose(mean, [0.5, 0.5, 0])
    # Old traffic fades: the running weight is capped.
    monkeypatch.setattr(centring, "MAX_RUNNING_COUNT", 4)
    centring.learn_means(space=space, scope="s", side="query", vectors=first[:4], languages=["en"] * 4)
    mean, _ = centring.language_means(space=space, scope="s", side="query")["en"]
    assert np.allclose(mean, [0.75, 0.25, 0])
    assert LanguageMean.objects.filter(scope="s", side="document").count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_first_learners_of_a_language_at_once_both_count():
    import threading

    from django.db import connection

    space = active_space()
    barrier = threading.Barrier(2)
    errors = []

    def learn(direction: list[float]) -> None:
        try:
            barrier.wait()
            centring.learn_means(space=space, scope="race", side="query",
                                 vectors=np.tile(np.array(direction, dtype=np.float32), (3, 1)), languages=["zh"] * 3)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=learn, args=(d,)) for d in ([1, 0], [0, 1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    mean, count = centring.language_means(space=space, scope="race", side="query")["zh"]
    assert count == 6 and np.allclose(mean, [0.5, 0.5])
