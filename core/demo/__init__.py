"""Built-in demo trainables on a synthetic pose-keypoint dataset: `core.demo:mlp`, `core.demo:lstm`,
and `core.demo:input_bound` (CPU-side preprocessing on the critical path, with or without prefetch).

torch is imported only when a trainable runs, so importing this package stays cheap.
"""

from core.demo.input_bound import input_bound
from core.demo.train import lstm, mlp

__all__ = ["input_bound", "lstm", "mlp"]
