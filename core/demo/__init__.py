"""Built-in demo trainables on a synthetic pose-keypoint dataset: `core.demo:mlp`, `core.demo:lstm`.

torch is imported only when a trainable runs, so importing this package stays cheap.
"""

from core.demo.train import lstm, mlp

__all__ = ["lstm", "mlp"]
