"""Chinese word segmentation for whole-word masking: jieba's algorithm and dictionary, fast.

The segmenter is ``rjieba`` (the Python binding of jieba-rs, a Rust implementation of jieba:
the same prefix dictionary, DAG route by word frequency and HMM for unknown words), about 25x
faster than the pure-Python ``jieba`` package, which is used only when ``rjieba`` cannot be
imported (with one warning per process). Both take user dictionaries in jieba's format.

Only runs of Han characters are segmented (see :mod:`data_prep.textutil`): callers pass text in
which every other character is a space, so each Han run is cut on its own, exactly as if it were
passed alone, and a whole chunk of text takes a single call into the segmenter.

What was used goes into the manifest (:meth:`Segmenter.describe`): the package and its version,
the sha256 of the file that holds its dictionary (the compiled rjieba module, whose dictionary is
built in, or jieba's ``dict.txt``) and of the user dictionary, so that a changed segmenter is
visible and changes the encode fingerprint.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re

import numpy as np

from data_prep.shards import sha256_file

BACKENDS = ("rjieba", "jieba")
# Text is cut in pieces of about this many characters, at a space (where the result cannot
# change): the segmenter's word list costs ~60 bytes per word, so one piece per call keeps a
# long paragraph's memory bounded (~10 MB).
PIECE_CHARS = 1 << 18
# jieba's user dictionary line: the word, then optionally " frequency" and " tag".
_USER_DICT_LINE = re.compile(r"^(.+?)( [0-9]+)?( [a-z]+)?$")

_log = logging.getLogger(__name__)
_announced_fallback = False


class UserDictError(ValueError):
    """A user dictionary that cannot be used; the message names the file and the fix."""


def read_user_dict(path: str) -> list[tuple[str, int | None, str | None]]:
    """Entries ``(word, frequency or None, tag or None)`` of a jieba-format user dictionary:
    one word per line, optionally followed by a frequency and a part-of-speech tag, separated by
    spaces; UTF-8 (a byte-order mark is skipped); blank lines ignored. A word without a frequency
    gets the smallest one that makes it a single word (jieba's ``suggest_freq``)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UserDictError(f"--user-dict {path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise UserDictError(f"--user-dict {path}: not UTF-8 ({exc}); save it as UTF-8") from None
    entries = []
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        word, freq, tag = _USER_DICT_LINE.match(line).groups()
        if freq is not None and int(freq) == 0:
            # jieba turns frequency 0 into a forced split that jieba-rs does not have: refuse it
            # rather than segment differently depending on which package is installed.
            raise UserDictError(
                f"--user-dict {path}, line {lineno}: frequency 0 ({line!r}) is not supported; "
                "remove the line, or give the word a positive frequency"
            )
        entries.append((word, int(freq) if freq is not None else None, tag.strip() if tag else None))
    return entries


def choose_backend(announce: bool = True) -> str:
    """``rjieba`` when it can be imported, else ``jieba``, saying so once per process when
    ``announce`` (an encode run announces in its first rank only)."""
    global _announced_fallback
    # Found, not imported: importing rjieba loads its dictionary (~0.3 s), which a run that meets
    # no Han text (--language auto on English) should not pay.
    if importlib.util.find_spec("rjieba") is None:
        if announce and not _announced_fallback:
            _announced_fallback = True
            _log.warning(
                "rjieba is not installed: Chinese words come from the pure-Python jieba, about "
                "25x slower (pip install the rjieba version pinned in requirements.txt)"
            )
        return "jieba"
    return "rjieba"


class Segmenter:
    """A loaded jieba-style segmenter. ``backend``: ``rjieba``, ``jieba`` or None (rjieba when
    installed, else jieba after one warning per process unless ``announce`` is False)."""

    def __init__(self, user_dict: str | None = None, backend: str | None = None, announce: bool = True):
        if backend is None:
            backend = choose_backend(announce)
        if backend not in BACKENDS:
            raise ValueError(f"segmenter backend must be one of {BACKENDS}, not {backend!r}")
        self.backend = backend
        self.user_dict = user_dict
        entries = read_user_dict(user_dict) if user_dict else []
        if backend == "rjieba":
            import rjieba

            if entries:
                impl = rjieba.Jieba()
                for word, freq, tag in entries:
                    impl.add_word(word, freq, tag)
                self.cut = impl.cut  # cut(text, hmm=True)
            else:
                # Importing rjieba already loaded its dictionary into a default instance (about
                # 0.3 s and tens of MB): use that one rather than load it twice.
                self.cut = rjieba.cut
        else:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            impl = jieba.Tokenizer()
            impl.initialize()
            for word, freq, tag in entries:
                impl.add_word(word, freq, tag)
            self.cut = impl.lcut  # lcut(sentence, cut_all=False, HMM=True)

    def describe(self) -> dict:
        """The manifest's record of this segmenter."""
        return describe(self.backend, self.user_dict)

    def word_starts(self, text: str) -> np.ndarray:
        """Offsets (int64, ascending) in ``text`` of the first character of every word that does
        not start with a space. ``text`` holds Han runs separated by spaces."""
        out = []
        pos, n = 0, len(text)
        while pos < n:
            end = n
            if n - pos > PIECE_CHARS:
                end = text.rfind(" ", pos + 1, pos + PIECE_CHARS)
                if end < 0:  # one Han run longer than a piece: cut it whole, never inside
                    end = text.find(" ", pos + PIECE_CHARS)
                    end = n if end < 0 else end
            piece = text[pos:end]
            words = self.cut(piece)
            lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
            starts = np.cumsum(lengths) - lengths
            del words
            # Spaces come back one per word (jieba's whitespace rule): keep the Han words.
            chars = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)
            out.append(starts[chars[starts] != 32] + pos)
            pos = end
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def dictionary_file(backend: str) -> str:
    """The file holding the backend's main dictionary: rjieba's compiled module (jieba-rs builds
    jieba's dictionary in) or jieba's ``dict.txt``."""
    package = importlib.util.find_spec(backend).submodule_search_locations[0]
    if backend == "rjieba":
        (name,) = [n for n in os.listdir(package) if n.startswith("rjieba.") and n.endswith((".so", ".pyd"))]
        return os.path.join(package, name)
    return os.path.join(package, "dict.txt")


def describe(backend: str, user_dict: str | None) -> dict:
    """Segmenter record for the manifest and the encode fingerprint (hashes files, loads nothing)."""
    path = dictionary_file(backend)
    return {
        "name": backend,
        "version": importlib.metadata.version(backend),
        "dictionary": os.path.basename(path) + (" (built in)" if backend == "rjieba" else ""),
        "dictionary_sha256": sha256_file(path),
        "user_dict_sha256": sha256_file(user_dict) if user_dict else None,
    }
