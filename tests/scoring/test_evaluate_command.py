"""`optiinfra scorers evaluate FILE`, run as a user would: figures per scorer against labels, the length baseline,
and one clear sentence for a bad file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONTEXT = "Venus is the hottest planet, with surface temperatures around 465 degrees Celsius."


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optiinfra", "scorers", "evaluate", *args], capture_output=True, text=True, timeout=600
    )


def test_evaluate_reports_auc_and_rates_per_scorer_with_the_length_baseline(tmp_path: Path) -> None:
    items = [
        {"prompt": "Which planet is the hottest?", "answer": "Venus, at 465 degrees Celsius.", "context": CONTEXT,
         "label": 0},
        {"prompt": "How hot is Venus?", "answer": "Around 465 degrees Celsius.", "context": CONTEXT, "label": False},
        {"prompt": "Which planet is the hottest?", "answer": "Jupiter, thanks to its storms.", "context": CONTEXT,
         "label": 1},
        {"prompt": "How hot is Venus?", "answer": "About 120 degrees Fahrenheit in winter.", "context": CONTEXT,
         "label": True},
    ]  # fmt: skip
    path = tmp_path / "labeled.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in items) + "\n")

    done = _run(str(path), "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["items"], report["bad"], report["good"]) == (4, 2, 2)
    by_name = {result["scorer"]: result for result in report["results"]}
    assert set(by_name) == {"relevance", "coherence", "groundedness", "hallucination", "toxicity"}
    assert by_name["hallucination"]["auc"] == 1.0
    assert by_name["hallucination"]["tpr"] == 1.0
    assert by_name["hallucination"]["fpr"] == 0.0
    assert report["length_baseline"]["scorer"] == "answer length"
    assert report["length_baseline"]["auc"] is not None


def test_a_bad_file_is_one_sentence_naming_the_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"prompt": "q", "answer": "a", "label": 1}\nnot json\n{"prompt": "q", "answer": "a", "label": 7}\n'
    )
    done = _run(str(path))
    assert done.returncode == 1
    assert "line 2: not a JSON object" in done.stderr
    assert "line 3: label must be 0, 1, true or false" in done.stderr
    assert "Traceback" not in done.stderr
