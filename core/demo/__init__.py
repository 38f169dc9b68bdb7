"""Built-in demo trainables on a synthetic pose-keypoint dataset: `gridwatch.demo:mlp`, `gridwatch.demo:lstm`,
and `gridwatch.demo:input_bound` (CPU-side preprocessing on the critical path, with or without prefetch).

torch is imported only when a trainable runs, so importing this package stays cheap.
"""

from gridwatch.demo.input_bound import input_bound
from gridwatch.demo.train import lstm, mlp

__all__ = ["input_bound", "lstm", "mlp"]
