"""Property-based tests (issue 11 part 4): random recipes and manifests never end in anything but a typed error.

Random TOML and JSON values, random bytes, and random mutations of the shipped recipes and of a
real driver tree's manifest go through the same loaders the commands use. Each either loads or
raises an AgentError (exit 2), never an untyped exception (exit 1, "a bug"). A manifest that loads
names only paths that stay inside the tree's folders. Hypothesis runs derandomized (the same
examples on every run, so CI is stable) with moderate example counts; HYPOTHESIS_PROFILE=deep
runs many more, randomly.
"""

from __future__ import annotations

import json
import math
import os
import string
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tooling import REPO
from treelib import make_tree

from agent.errors import AgentError, RecipeError
from agent.recipes.loader import RELEASES_DIR, load_recipe, load_recipes
from agent.tree import FIRMWARE_DIR, MODULES_DIR, load_tree

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("deep", max_examples=2000, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

RECIPES = [*sorted(RELEASES_DIR.glob("*.toml")), *sorted((REPO / "tests/recipes").glob("*.toml"))]
RECIPE_DATA = [tomllib.loads(p.read_text()) for p in RECIPES]


# --- values -----------------------------------------------------------------------------------------------------
# Strings that look like what the loaders care about: names, paths, hashes, and the odd byte.
NAMEISH = st.sampled_from(
    ["", ".", "..", "/", "a/../b", "/etc/passwd", "i915/x.bin", "x.ko", "../x.ko", "a" * 300, "\x00", "é", "-x", "~"]
)
TEXT = st.one_of(st.text(max_size=20), st.text(alphabet=string.ascii_letters + "./-_", max_size=20), NAMEISH)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), TEXT
)


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=12,
    )


def toml_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), TEXT)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=12,
    )


# --- a TOML writer for random data: inline tables and arrays only -------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in data.items())


def test_the_writer_round_trips_a_real_recipe() -> None:
    for data in RECIPE_DATA:
        assert tomllib.loads(toml_document(data)) == data


# --- mutations of real documents ----------------------------------------------------------------------------------
def paths_of(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a nested dict/list document, as key paths."""
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += paths_of(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            out += paths_of(value, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn, documents: list[dict[str, Any]], values: st.SearchStrategy[Any]) -> dict[str, Any]:
    """A real document with a few random edits: a value replaced, a key dropped or added, a list emptied."""
    data = json.loads(json.dumps(draw(st.sampled_from(documents))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        places = paths_of(data)
        place = draw(st.sampled_from(places))
        parent: Any = data
        for key in place[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "drop", "add", "empty"]))
        if not place:
            data[draw(TEXT)] = draw(values)
            continue
        last = place[-1]
        if action == "replace":
            parent[last] = draw(values)
        elif action == "drop" and isinstance(parent, dict):
            del parent[last]
        elif action == "drop" and isinstance(parent, list):
            parent.pop(last)
        elif action == "add" and isinstance(parent[last], dict):
            parent[last][draw(TEXT)] = draw(values)
        elif action == "empty" and isinstance(parent[last], list | dict):
            parent[last] = type(parent[last])()
        else:
            parent[last] = draw(NAMEISH)
    return data


@st.composite
def edited_text(draw: st.DrawFn, texts: list[str]) -> str:
    """A real file with characters inserted, deleted or replaced at random places."""
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        cut = draw(st.integers(min_value=0, max_value=8))
        text = text[:at] + draw(st.text(alphabet='[]{}="\n ./#\\\'abc0', max_size=6)) + text[at + cut :]
    return text


# --- recipes ------------------------------------------------------------------------------------------------------
def _load_recipe_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.toml"
        path.write_bytes(data)
        try:
            load_recipe(path)
        except RecipeError as e:
            assert e.exit_code == 2 and e.path == str(path)
        found = load_recipes([Path(folder)])
        assert len(found.recipes) + len(found.errors) == 1


@settings(max_examples=100)
@given(st.dictionaries(TEXT, toml_values(), max_size=8))
def test_random_toml_documents_load_or_raise_recipe_errors(data: dict[str, Any]) -> None:
    _load_recipe_bytes(toml_document(data).encode())


@settings(max_examples=100)
@given(mutated(RECIPE_DATA, toml_values()))
def test_mutated_real_recipes_load_or_raise_recipe_errors(data: dict[str, Any]) -> None:
    _load_recipe_bytes(toml_document(data).encode())


@settings(max_examples=60)
@given(edited_text([p.read_text() for p in RECIPES]))
def test_edited_recipe_files_load_or_raise_recipe_errors(text: str) -> None:
    _load_recipe_bytes(text.encode())


@settings(max_examples=60)
@given(st.binary(max_size=300))
def test_random_bytes_as_a_recipe_raise_recipe_errors(data: bytes) -> None:
    _load_recipe_bytes(data)


@settings(max_examples=15)
@given(mutated(RECIPE_DATA, toml_values()))
def test_the_recipes_command_never_exits_1_on_a_random_recipe(data: dict[str, Any]) -> None:
    from agent.cli import main

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "random.toml").write_text(toml_document(data))
        (Path(folder) / "good.toml").write_text(RECIPES[0].read_text())
        assert main(["--recipes-dir", folder, "recipes", "--json"]) in (0, 2)


# --- manifests ----------------------------------------------------------------------------------------------------
# One tree for every example: only its manifest.json changes (its files are what a build writes).
TREE = Path(tempfile.mkdtemp(prefix="property-tree-")) / "tree"
MANIFEST_DATA = make_tree(TREE)


def _load_manifest(write: Callable[[Path], None]) -> None:
    """Load the tree with the manifest ``write`` wrote; a tree that loads keeps every path inside its folders."""
    root = TREE
    write(root / "manifest.json")
    try:
        tree = load_tree(root)
    except AgentError as e:
        assert e.exit_code == 2, e
        return
    base = root.resolve()
    for module in tree.manifest.modules:
        assert (root / module.path).resolve().is_relative_to(base / MODULES_DIR / tree.manifest.kernel)
    for fw in tree.manifest.firmware:
        assert (root / fw.path).resolve().is_relative_to(base / FIRMWARE_DIR)
        assert tree.firmware_file(fw.name).resolve().is_relative_to(base / FIRMWARE_DIR)
    assert tree.modules_dir.resolve().is_relative_to(base)


@settings(max_examples=100)
@given(json_values())
def test_random_json_manifests_load_or_raise_usage_errors(data: Any) -> None:
    _load_manifest(lambda path: path.write_text(json.dumps(data)))


@settings(max_examples=200)
@given(mutated([MANIFEST_DATA], json_values()))
def test_mutated_real_manifests_load_or_raise_and_never_escape(data: dict[str, Any]) -> None:
    _load_manifest(lambda path: path.write_text(json.dumps(data)))


@settings(max_examples=60)
@given(edited_text([json.dumps(MANIFEST_DATA, indent=1)]))
def test_edited_manifest_files_load_or_raise_usage_errors(text: str) -> None:
    _load_manifest(lambda path: path.write_text(text))


@settings(max_examples=60)
@given(st.binary(max_size=300))
def test_random_bytes_as_a_manifest_raise_usage_errors(data: bytes) -> None:
    _load_manifest(lambda path: path.write_bytes(data))


@pytest.mark.parametrize("field", ["kernel", "modules.path", "firmware.name", "firmware.path"])
@settings(max_examples=40)
@given(value=st.text(alphabet="./ab-_+", min_size=0, max_size=24))
def test_path_like_strings_in_path_fields_never_escape(field: str, value: str) -> None:
    data = json.loads(json.dumps(MANIFEST_DATA))
    if field == "kernel":
        data["kernel"] = value
    elif field == "modules.path":
        data["modules"][0]["path"] = f"{MODULES_DIR}/{data['kernel']}/{value}"
    elif field == "firmware.name":
        data["firmware"][0]["name"] = value
        data["firmware"][0]["path"] = f"{FIRMWARE_DIR}/{value}"
    else:
        data["firmware"][0]["path"] = value
    _load_manifest(lambda path: path.write_text(json.dumps(data)))
