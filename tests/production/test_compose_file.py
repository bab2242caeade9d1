"""The compose reader interpolates as the Compose specification says (it stands in for `docker compose config`)."""
import pytest

from tests.production.compose_file import MissingVariable, healthcheck_argv, interpolate

ENVIRONMENT = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("$SET/${SET}", "value/value"),
    ("${UNSET}", ""),
    ("${UNSET:-fallback} ${EMPTY:-fallback} ${SET:-fallback}", "fallback fallback value"),
    ("${UNSET-fallback} ${EMPTY-fallback}", "fallback "),
    ("${SET:+alternative} ${EMPTY:+alternative} ${EMPTY+alternative} ${UNSET+alternative}",
     "alternative  alternative "),
    ("${UNSET:-${SET}}", "value"),
    ("$$HOSTNAME and $${POSTGRES_USER}", "$HOSTNAME and ${POSTGRES_USER}"),
    ("${EMPTY?message}", ""),
])
def test_it_interpolates_like_compose(text, expected):
    assert interpolate(text, ENVIRONMENT) == expected


@pytest.mark.parametrize("text", ["${UNSET:?say why}", "${EMPTY:?say why}", "${UNSET?say why}"])
def test_it_stops_on_a_missing_required_variable_with_its_message(text):
    with pytest.raises(MissingVariable, match="required variable (UNSET|EMPTY) is missing a value: say why"):
        interpolate(text, ENVIRONMENT)


def test_it_runs_healthchecks_as_docker_does():
    assert healthcheck_argv(["CMD", "redis-cli", "ping"]) == ["redis-cli", "ping"]
    assert healthcheck_argv(["CMD-SHELL", "test -f x"]) == ["/bin/sh", "-c", "test -f x"]
    assert healthcheck_argv("test -f x") == ["/bin/sh", "-c", "test -f x"]
