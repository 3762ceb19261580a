"""Reading recipes: YAML with line numbers, dotted overrides, and checks against the annotations."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from finsent.config.base import KeyPath, LineMap, Location
from finsent.config.recipe import RecipeConfig
from finsent.errors import ConfigError

NO_LINES = LineMap()  # a section built from code, not read from a file


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-5`` as a float as YAML 1.2 does (YAML 1.1 wants ``1.0e-5``): a
    learning rate written the usual way must not reach the optimizer as a string."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def resolve_recipe(name_or_path: str | Path) -> Path:
    """Return the path of a recipe given as a file path or a bundled name such as ``tiny-cpu``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError("recipe not found", path=path, expected="an existing YAML file", got=str(path))
        return path
    bundled = resources.files("finsent") / "recipes" / f"{name_or_path}.yaml"
    if bundled.is_file():
        return Path(str(bundled))
    known = sorted(
        p.name.removesuffix(".yaml")
        for p in (resources.files("finsent") / "recipes").iterdir()
        if p.name.endswith(".yaml")
    )
    raise ConfigError(f"unknown recipe {str(name_or_path)!r}; bundled recipes: {', '.join(known)}")


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> RecipeConfig:
    """Load a recipe (bundled name or path; None for the defaults), apply ``key.path=value`` overrides, check it.

    The recipe keeps its line map (``cfg.locate(key)``), so checks made after loading still name file and line.
    """
    tree: dict[str, Any] = {}
    locations: dict[KeyPath, Location] = {}
    source = None
    if recipe is not None:
        path = resolve_recipe(recipe)
        source = str(path)
        tree = _read_yaml(path, locations)
    for override in overrides or []:
        _apply_override(tree, override, locations)
    lines = LineMap(source, locations)
    cfg = build_dataclass(RecipeConfig, tree, (), lines)
    cfg.line_map = lines
    return cfg


def dump_config(cfg: Any) -> str:
    """Return the resolved config as YAML, as saved to ``config.yaml`` beside a stage's outputs."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False, allow_unicode=True, width=119)


def config_hash(cfg: Any) -> str:
    """Return a short stable hash of a config section, used to tell whether a stage must run again."""
    return hashlib.sha256(dump_config(cfg).encode()).hexdigest()[:16]


def _read_yaml(path: Path, locations: dict[KeyPath, Location]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read recipe ({err})", path=path) from err
    loader = RecipeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        tree = _construct(loader, node, (), locations, str(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(err, 'problem', err)}", path=path, line=mark.line + 1 if mark else None
        ) from err
    finally:
        loader.dispose()
    if not isinstance(tree, dict):
        raise ConfigError(
            "", path=path, line=node.start_mark.line + 1, expected="a mapping of sections", got=type(tree).__name__
        )
    return tree


def _construct(
    loader: RecipeLoader, node: yaml.Node, key_path: KeyPath, locations: dict[KeyPath, Location], source: str
) -> Any:
    locations.setdefault(key_path, (source, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError("", path=source, line=line, field=_dotted(key_path), expected="string keys", got=key)
            if key in result:
                raise ConfigError("duplicate key", path=source, line=line, field=_dotted((*key_path, key)))
            locations[(*key_path, key)] = (source, line)
            result[key] = _construct(loader, value_node, (*key_path, key), locations, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, (*key_path, i), locations, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _apply_override(tree: dict[str, Any], override: str, locations: dict[KeyPath, Location]) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError("", path="<command line>", field=override, expected="an override like data.seed=3")
    try:
        value = yaml.load(raw, Loader=RecipeLoader) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid value {raw!r}", path="<command line>", field=key) from err
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        child = (
            node[part]
            if isinstance(node, list) and isinstance(part, int) and part < len(node)
            else (node.get(part) if isinstance(node, dict) else None)
        )
        if child is None:
            if isinstance(node, list):
                raise ConfigError("", path="<command line>", field=key, expected=f"an index < {len(node)}", got=part)
            if isinstance(parts[i + 1], int):
                raise ConfigError(
                    "the recipe sets no list here to index; give the whole list, e.g. "
                    f"{_dotted(tuple(parts[: i + 1]))}='[...]'",
                    path="<command line>",
                    field=key,
                )
            child = node[part] = {}
        node = child
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ConfigError("", path="<command line>", field=key, expected=f"an index < {len(node)}", got=last)
        node[last] = value
    else:
        node[last] = value
    for path in [p for p in locations if p[: len(parts)] == tuple(parts)]:
        del locations[path]
    for i in range(1, len(parts) + 1):
        locations.setdefault(tuple(parts[:i]), ("<command line>", None))


def _dotted(key_path: KeyPath) -> str:
    return ".".join(str(p) for p in key_path)


def build_dataclass(cls: type, data: Any, key_path: KeyPath = (), lines: LineMap = NO_LINES) -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and types; errors carry file, line and key."""
    path, line = lines.where(key_path)
    if not isinstance(data, dict):
        raise ConfigError(
            "",
            path=path,
            line=line,
            field=_dotted(key_path) or "<top>",
            expected=f"a mapping ({cls.__name__})",
            got=data,
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            key_loc = lines.where((*key_path, key))
            raise ConfigError(
                f"unknown key; valid keys: {', '.join(fields)}",
                path=key_loc[0],
                line=key_loc[1],
                field=_dotted((*key_path, key)),
            )
        kwargs[key] = _check(value, hints[key], (*key_path, key), lines)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError("missing required key", path=path, line=line, field=_dotted((*key_path, missing[0])))
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if err.path is not None:
            raise
        sub = tuple(err.field.split(".")) if err.field else ()
        sub_path = (*key_path, *(int(p) if p.isdigit() else p for p in sub))
        err_path, err_line = lines.where(sub_path)
        raise ConfigError(
            err.message, path=err_path, line=err_line, field=_dotted(sub_path), expected=err.expected, got=err.got
        ) from err


def _check(value: Any, hint: Any, key_path: KeyPath, lines: LineMap) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail(expected: str) -> ConfigError:
        path, line = lines.where(key_path)
        return ConfigError("", path=path, line=line, field=_dotted(key_path), expected=expected, got=value)

    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check(value, option, key_path, lines)
            except ConfigError as err:
                errors.append(err)
        if len(options) == 1:
            raise errors[0]
        raise fail(" or ".join(_type_name(o) for o in options))
    if origin is Literal:
        if value not in args:
            raise fail("one of " + "|".join(str(a) for a in args))
        return value
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, key_path, lines)
    if origin is list:
        if not isinstance(value, list):
            raise fail(f"a list of {_type_name(args[0])}")
        return [_check(v, args[0], (*key_path, i), lines) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail(f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}")
        return {
            _check(k, args[0], key_path, lines): _check(v, args[1], (*key_path, k), lines) for k, v in value.items()
        }
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an int")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    raise TypeError(f"unsupported config annotation {hint!r} at {_dotted(key_path)}")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "|".join(str(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))
