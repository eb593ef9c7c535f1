"""The bundle cache's folder, and the three sections that write under it (A3's data files, A4's CUDA units, A6's
tuned attention launches) each finding it the same way: $VLLM_BUNDLE_CACHE, else $XDG_CACHE_HOME/vllm_bundles,
else ~/.cache/vllm_bundles."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundler_lib import data_files  # noqa: E402
from bundler_lib.common import bundle_cache  # noqa: E402
from bundler_lib.example import attention_tune  # noqa: E402
from test_collect_cuda import MINI, load_section, run  # noqa: E402


def _homes(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VLLM_BUNDLE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)


def _three_settings(tmp_path, monkeypatch, folder):
    """folder() under each setting, weakest first."""
    _homes(tmp_path, monkeypatch)
    got = [folder()]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got.append(folder())
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path / "mine"))
    got.append(folder())
    return got


def _expected(tmp_path, sub):
    return [os.path.join(str(tmp_path / "home" / ".cache" / "vllm_bundles"), *sub),
            os.path.join(str(tmp_path / "xdg" / "vllm_bundles"), *sub), os.path.join(str(tmp_path / "mine"), *sub)]


def test_helper_defines_the_name_asked_and_stands_alone(tmp_path, monkeypatch):
    ns: dict = {}
    exec(bundle_cache.helper("_my_cache"), ns)
    assert "_bundle_cache_base" not in ns
    assert _three_settings(tmp_path, monkeypatch, ns["_my_cache"]) == _expected(tmp_path, [])


def test_cuda_units_folder(tmp_path, monkeypatch):
    text, _m = run(MINI, tmp_path, "_C.my_op")
    assert text.count('os.environ.get("VLLM_BUNDLE_CACHE")') == 1
    ns = load_section(tmp_path)
    assert _three_settings(tmp_path, monkeypatch, ns["_cuda_cache_root"]) == _expected(tmp_path, ["cuda"])


def test_tuned_attention_folder(tmp_path, monkeypatch):
    ns: dict = {attention_tune._BUNDLE_ATTN_KERNEL: object()}
    exec(attention_tune.source(), ns)
    assert _three_settings(tmp_path, monkeypatch, ns["_bundle_attn_folder"]) == _expected(
        tmp_path, ["attention-configs"])


def test_data_files_folder(tmp_path, monkeypatch):
    files = {"vllm/x/configs/a.json": ('{"a": 1}', "Apache-2.0")}
    ns: dict = {}
    exec("import os, shutil, tempfile\n" + data_files.section(files, "k" * 64, {"dir"}, []), ns)

    def folder():
        ns["_BUNDLE_DATA_ROOT"] = None
        return ns["_bundle_data_dir"]("vllm/x")

    got = _three_settings(tmp_path, monkeypatch, folder)
    assert got == _expected(tmp_path, ["data-" + "k" * 32, "vllm", "x"])
    assert all(Path(g, "configs", "a.json").read_text() == '{"a": 1}' for g in got)


@pytest.mark.parametrize("text", [lambda: attention_tune.source(), lambda: data_files.section({}, "k" * 64, {"dir"}, [])])
def test_no_section_spells_the_folder_itself(text):
    """One definition: the sections call their copy of bundle_cache's helper, none repeats the environment lookup."""
    assert text().count('os.environ.get("VLLM_BUNDLE_CACHE")') == 1
