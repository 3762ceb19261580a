import pytest

from finsent.errors import ConfigError
from finsent.registry import Registry


def test_register_get_help_and_names():
    registry: Registry = Registry("widget")

    @registry.register("round_thing")
    def round_thing():
        """Rolls.

        More text that is not help."""

    registry.add("lazy_join", "os.path:join", help="Joins paths.")
    assert registry.names() == ["lazy_join", "round_thing"]
    assert registry.get("round_thing") is round_thing
    assert registry.help("round_thing") == "Rolls."
    import os.path

    assert registry.get("lazy_join") is os.path.join


def test_unknown_name_lists_known_and_suggests():
    registry: Registry = Registry("reward")
    registry.add("correctness", object())
    registry.add("format", object())
    with pytest.raises(
        ConfigError, match=r"unknown reward 'formta'; known: correctness, format. Did you mean 'format'\?"
    ):
        registry.get("formta")


def test_duplicate_registration_is_refused():
    registry: Registry = Registry("x")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("a", 2)
