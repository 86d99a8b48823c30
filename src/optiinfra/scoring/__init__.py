"""Offline answer scoring: the application agent's own scorers (issue 14).

Every scorer runs on this machine, from model files that ship inside registry packages (the `optiinfra[scorers]`
extra), checked by sha256 when they load. Nothing is downloaded at run time. docs/scorers.md says what each scorer
can and cannot catch, with the calibration figures.

Importing this package is cheap: onnxruntime, tokenizers and scikit-learn are imported only when a scorer first
scores (`optiinfra.scoring.models`), so the command line and the server start without them.
"""

from optiinfra.scoring.base import ScoreInput, Scorer, ScorerUnavailableError

__all__ = ["ScoreInput", "Scorer", "ScorerUnavailableError"]
