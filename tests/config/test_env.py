"""Settings helpers read typed values from the environment and fail loudly on bad ones."""
import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str, env_url


def test_it_reads_booleans_in_common_spellings(monkeypatch):
    monkeypatch.setenv("FLAG", "Yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "0")
    assert env_bool("FLAG", True) is False


def test_it_rejects_a_boolean_it_cannot_read_and_names_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe'"):
        env_bool("DEBUG", True)


def test_it_rejects_integers_out_of_range(monkeypatch):
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "16")
    with pytest.raises(ImproperlyConfigured, match="EMBEDDING_DIMENSIONS=16"):
        env_int("EMBEDDING_DIMENSIONS", None, minimum=32, maximum=4096)
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "abc")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("EMBEDDING_DIMENSIONS", None, minimum=32)


def test_it_uses_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("EMBEDDING_DIMENSIONS", raising=False)
    assert env_int("EMBEDDING_DIMENSIONS", 1024) == 1024
    monkeypatch.delenv("ALLOWED_HOSTS", raising=False)
    assert env_list("ALLOWED_HOSTS", ["localhost"]) == ["localhost"]


def test_it_splits_lists_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", "a.example, b.example,,")
    assert env_list("ALLOWED_HOSTS", []) == ["a.example", "b.example"]


def test_it_rejects_a_url_with_the_wrong_scheme(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env_url("DATABASE_URL", schemes=("postgres", "postgresql"))


def test_it_reads_a_secret_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("SECRET_KEY_FILE", str(secret))
    assert env_str("SECRET_KEY") == "s3cret"
