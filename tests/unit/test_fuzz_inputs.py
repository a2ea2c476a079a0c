"""Property tests (hypothesis, fixed seed, bounded examples): whatever a user writes in a config
file or whatever happens to a shard on disk, the loaders raise only plmscale's own errors
(``ConfigError``, ``ShardError``), never a crash of another kind."""

import json
import shutil

import pytest
import yaml
from data_prep.shards import ShardedCorpus, ShardError
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from plmscale.config import ConfigError, ExperimentConfig, load_config, validate_config
from plmscale.config.loading import _field_types

SECTIONS = {s: list(_field_types(type(getattr(ExperimentConfig(), s))))
            for s in ("model", "parallel", "data", "objective", "train")}
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
names = st.one_of(st.sampled_from(sorted({n for f in SECTIONS.values() for n in f})),
                  st.text(max_size=10))
sections = st.dictionaries(st.one_of(st.sampled_from(sorted(SECTIONS)), st.text(max_size=8)),
                           st.one_of(st.dictionaries(names, values, max_size=4), values),
                           max_size=4)


def _load(path, text: str) -> None:
    path.write_text(text)
    try:
        cfg = load_config(path)
        validate_config(cfg, world_size=1)
    except ConfigError:
        pass


@seed(14)
@SETTINGS
@given(document=sections)
def test_config_documents_fail_only_with_config_errors(tmp_path, document):
    _load(tmp_path / "c.yaml", yaml.safe_dump(document, allow_unicode=True))


@seed(14)
@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list("model:train: -[]{}'\"#&*!|>\n\t 0123abc.=,")),
                    max_size=80))
def test_config_text_fails_only_with_config_errors(tmp_path, text):
    _load(tmp_path / "c.yaml", text)


@seed(14)
@SETTINGS
@given(override=st.text(max_size=30))
def test_overrides_fail_only_with_config_errors(override):
    try:
        validate_config(load_config(None, [override]), world_size=1)
    except ConfigError:
        pass


@pytest.fixture(scope="module")
def small_shards(demo_shards, tmp_path_factory):
    return demo_shards


def _damaged_copy(source, target, shard_edit, manifest_edit):
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    shard = target / manifest["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    kind, where, byte = shard_edit
    position = int(where * (len(data) - 1))
    if kind == "flip":
        data[position] ^= byte or 1
    elif kind == "truncate":
        del data[position:]
    else:  # extend
        data += bytes([byte]) * (position % 64 + 1)
    shard.write_bytes(bytes(data))
    if manifest_edit is not None:
        key, value = manifest_edit
        holder = manifest["shards"][0] if key in manifest["shards"][0] else manifest
        holder[key] = value
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@seed(14)
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(shard_edit=st.tuples(st.sampled_from(["flip", "truncate", "extend"]),
                            st.floats(0, 1), st.integers(0, 255)),
       manifest_edit=st.none() | st.tuples(
           st.sampled_from(["bytes", "num_documents", "file", "tokenizer", "shards", "sha256"]),
           values),
       verify=st.booleans())
def test_damaged_shards_fail_only_with_shard_errors(small_shards, tmp_path, shard_edit,
                                                    manifest_edit, verify):
    target = _damaged_copy(small_shards, tmp_path / "shards", shard_edit, manifest_edit)
    try:
        corpus = ShardedCorpus(target, verify=verify)
        for i in range(0, len(corpus), max(len(corpus) // 50, 1)):
            corpus.document(i)
    except ShardError:
        pass
