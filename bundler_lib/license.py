"""A0 license and scope: find the tree's license files, identify the license, decide, give the notice.

Reads only the files at the tree's root whose names start with LICENSE/LICENCE/COPYING/NOTICE
(any case, any suffix: `LICENSE`, `LICENSE.txt`, `LICENSE-MIT`, `COPYING.md`, `NOTICE`...).
A permissive license gives `status: ok` and the notice to prepend; anything else is a StageError.

`A0.license.json`:
- `status`: "ok".
- `repo_license`: SPDX id of the tree's license (`Apache-2.0`, `MIT`, `BSD-3-Clause`, ...; `A OR B` for
  a dual-licensed tree with one file per license).
- `license_files`: sorted tree-relative names of the license files; `notice_files` likewise for NOTICE.
- `headers_to_prepend`: list of text blocks, each already made of `#` comment lines ending in a newline,
  to put at the very top of the bundle in this order (A7 joins them with one `#` line between them).
  For Apache-2.0: a line naming the tree's license and file, then the license's own application notice
  (`Licensed under the Apache License, ...`) verbatim as the LICENSE file's appendix gives it, then each
  NOTICE file verbatim. For MIT/BSD/ISC/...: the license file verbatim (those licenses require the
  copyright and permission notice in every copy).
- `notes`: what was seen (other license texts mentioned, missing appendix, ...).
- `runtime`: the torch and Python versions the tree targets (`torch`: "2.11", `requires_python`: ">=3.10",
  `sources`, `notes`), read from `requirements/cuda.txt`, `pyproject.toml` or `CMakeLists.txt`
  (`bundler_lib.runtime_deps`); A7 declares them in the bundle's PEP 723 block.
"""

import re
from pathlib import Path

from bundler_lib import runtime_deps
from bundler_lib.artifacts import write_json
from bundler_lib.errors import StageError

STAGE = "A0 license"
ARTIFACT = "A0.license.json"

_LICENSE_PREFIXES = ("LICENSE", "LICENCE", "COPYING")
_NOTICE_PREFIXES = ("NOTICE",)
_MAX_BYTES = 1 << 20  # a license file larger than this is not a license file

PERMISSIVE = {"Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC", "0BSD", "Zlib", "Unlicense",
              "BSL-1.0", "PSF-2.0"}
COPYLEFT = {"GPL-2.0", "GPL-3.0", "GPL", "AGPL-3.0", "LGPL-2.1", "LGPL-3.0", "LGPL", "MPL-2.0", "EPL-2.0",
            "CDDL-1.0", "EUPL-1.2", "SSPL-1.0"}

# (spdx id, regex over the whitespace-normalised, case-folded text). Order matters only for ties at the
# same position: the more specific pattern comes first.
_SIGNATURES = [
    ("AGPL-3.0", r"gnu affero general public license"),
    ("LGPL-3.0", r"gnu lesser general public license\s+version 3"),
    ("LGPL-2.1", r"gnu lesser general public license\s+version 2\.1"),
    ("LGPL", r"gnu (?:lesser|library) general public license"),
    ("GPL-3.0", r"gnu general public license\s+version 3"),
    ("GPL-2.0", r"gnu general public license\s+version 2"),
    ("GPL", r"gnu general public license"),
    ("MPL-2.0", r"mozilla public license,?\s+(?:version|v\.?)\s*2\.0"),
    ("EPL-2.0", r"eclipse public license\s*-?\s*v(?:ersion)?\s*2\.0"),
    ("SSPL-1.0", r"server side public license"),
    ("EUPL-1.2", r"european union public licen[cs]e"),
    ("CDDL-1.0", r"common development and distribution license"),
    ("Apache-2.0", r"apache license,?\s+version 2\.0"),
    ("BSL-1.0", r"boost software license\s*-?\s*version 1\.0"),
    ("PSF-2.0", r"python software foundation license version 2"),
    ("Unlicense", r"this is free and unencumbered software released into the public domain"),
    ("MIT", r"permission is hereby granted, free of charge, to any person obtaining a copy"),
    ("ISC", r"permission to use, copy, modify, and(?:/or)? distribute this software for any purpose"
            r" with or without fee is hereby granted"),
    ("Zlib", r"this software is provided 'as-is', without any express or implied\s+warranty"),
    ("BSD", r"redistribution and use in source and binary forms, with or without\s+modification, are permitted"),
]
_SPDX_LINE = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+\-]+(?:\s+(?:OR|AND|WITH)\s+[A-Za-z0-9.+\-]+)*)")
_APACHE_NOTICE = re.compile(
    r"^[ \t]*Licensed under the Apache License, Version 2\.0.*?limitations under the License\.[ \t]*$",
    re.S | re.M)
_APACHE_NOTICE_CANONICAL = """\
Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
"""


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).lower()


def identify(text: str) -> tuple[str, list[str]]:
    """The SPDX id of the license a text states (`unknown` if none), and the other ids it also mentions.

    The license is the one whose signature occurs first in the text (a LICENSE file that appends the
    licenses of bundled third-party code states its own first). A leading SPDX line wins outright.
    """
    head = "\n".join(text.splitlines()[:5])
    m = _SPDX_LINE.search(head)
    found: list[tuple[int, int, str]] = []
    t = _norm(text)
    for order, (spdx, pat) in enumerate(_SIGNATURES):
        hit = re.search(pat, t)
        if hit:
            found.append((hit.start(), order, spdx))
    found.sort()
    ids: list[str] = []
    for _, _, spdx in found:
        if spdx == "BSD":
            spdx = "BSD-3-Clause" if re.search(r"neither the name of|names of its\s+contributors", t) else "BSD-2-Clause"
        if spdx not in ids:
            ids.append(spdx)
    # A generic "GPL"/"LGPL" hit at the same place as a versioned one says nothing more.
    if "GPL" in ids and any(i.startswith("GPL-") for i in ids):
        ids.remove("GPL")
    if "LGPL" in ids and any(i.startswith("LGPL-") for i in ids):
        ids.remove("LGPL")
    if m:
        spdx = m.group(1).strip()
        return spdx, [i for i in ids if i != spdx]
    if not ids:
        return "unknown", []
    return ids[0], ids[1:]


def _spdx_parts(spdx: str) -> list[str]:
    """The licenses of an SPDX expression (an exception after WITH only adds permissions)."""
    parts = re.split(r"\s+(?:OR|AND)\s+", spdx.strip("() "))
    return [re.split(r"\s+WITH\s+", p)[0].strip("() ") for p in parts if p.strip("() ")]


def is_permissive(spdx: str) -> bool:
    """Every part of the expression must be permissive (a GPL part of an `A OR B` is refused too:
    the build does not choose a license on the user's behalf)."""
    parts = _spdx_parts(spdx)
    return bool(parts) and all(p.removesuffix("-only").removesuffix("-or-later") in PERMISSIVE for p in parts)


def _comment(text: str) -> str:
    """Text as `#` comment lines, verbatim (trailing spaces and trailing blank lines dropped)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n").split("\n")
    return "".join(("# " + ln.rstrip()).rstrip() + "\n" for ln in lines)


def _dedent_block(block: str) -> str:
    lines = block.split("\n")
    ind = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    return "\n".join(ln[ind:] for ln in lines)


def _root_files(tree: Path, prefixes: tuple[str, ...]) -> list[Path]:
    out = []
    for p in sorted(tree.iterdir(), key=lambda p: p.name):
        if p.is_file() and p.name.upper().startswith(prefixes):
            out.append(p)
    return out


def _read(p: Path) -> str:
    if p.stat().st_size > _MAX_BYTES:
        raise StageError(STAGE, p.name, f"is {p.stat().st_size} bytes, too large for a license file",
                         "check the tree's root: its LICENSE should be the license text only")
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def analyse(tree: Path) -> dict:
    """The A0 record of `tree` (raises StageError when the license is missing or not permissive)."""
    tree = Path(tree)
    if not tree.is_dir():
        raise StageError(STAGE, str(tree), "is not a directory", "pass the root of the extracted source tree (--tree)")
    lic_paths = _root_files(tree, _LICENSE_PREFIXES)
    notice_paths = _root_files(tree, _NOTICE_PREFIXES)
    if not lic_paths:
        raise StageError(STAGE, "tree/LICENSE", "the tree has no LICENSE (or LICENCE, COPYING) file at its root",
                         "bundle a tree that carries its license: check that the sdist extraction keeps LICENSE, "
                         "or add the upstream LICENSE file at the tree's root")
    notes: list[str] = []
    per_file: list[tuple[Path, str, str]] = []
    for p in lic_paths:
        text = _read(p)
        spdx, others = identify(text)
        if others:
            notes.append(f"{p.name} is {spdx}; it also mentions {', '.join(others)} (not the tree's own license)")
        per_file.append((p, text, spdx))
    for p, _, spdx in per_file:
        if spdx == "unknown":
            raise StageError(STAGE, f"tree/{p.name}", "its license could not be identified from its text",
                             "use a tree under a known permissive license (Apache-2.0, MIT, BSD), or check that "
                             f"{p.name} holds the license text")
        if not is_permissive(spdx):
            raise StageError(STAGE, f"tree/{p.name}",
                             f"the tree is licensed {spdx}, which is not a permissive license; bundling its code "
                             "into a standalone file would carry that license's obligations",
                             "bundle from a tree under a permissive license (Apache-2.0, MIT, BSD), or get the "
                             "code under such a license")
    ids: list[str] = []
    for _, _, spdx in per_file:
        if spdx not in ids:
            ids.append(spdx)
    repo_license = ids[0] if len(ids) == 1 else " OR ".join(sorted(ids))
    if len(ids) > 1:
        notes.append(f"{len(ids)} license files with different licenses: treated as dual-licensed ({repo_license})")

    headers: list[str] = []
    for p, text, spdx in per_file:
        if spdx == "Apache-2.0" or spdx.startswith("Apache-2.0"):
            m = _APACHE_NOTICE.search(text)
            if m:
                notice = _dedent_block(m.group(0))
            else:
                notice = _APACHE_NOTICE_CANONICAL
                notes.append(f"{p.name} has no application notice (appendix); the standard Apache-2.0 notice is used")
            headers.append(_comment(
                f"This file contains code from a source tree licensed under the Apache License, Version 2.0\n"
                f"(its {p.name}). Each inlined block names the file it comes from. The tree's license notice:\n\n"
                + notice) + "#\n# SPDX-License-Identifier: Apache-2.0\n")
        else:
            headers.append(_comment(f"This file contains code from a source tree licensed under {spdx}. "
                                    f"Its {p.name}, verbatim:\n\n" + text))
    for p in notice_paths:
        text = _read(p)
        if text.strip():
            headers.append(_comment(f"The tree's {p.name}, verbatim:\n\n" + text))
        else:
            notes.append(f"{p.name} is empty")
    if not notice_paths:
        notes.append("no NOTICE file at the tree's root")
    return {
        "status": "ok",
        "repo_license": repo_license,
        "license_files": [p.name for p in lic_paths],
        "notice_files": [p.name for p in notice_paths],
        "headers_to_prepend": headers,
        "notes": notes,
    }


def run(tree: Path, out: Path) -> dict:
    record = analyse(tree)
    # What the bundle will need where it runs (torch and Python versions the tree targets): A7 declares it.
    record["runtime"] = runtime_deps.tree_targets(Path(tree))
    write_json(Path(out) / ARTIFACT, record)
    return record
