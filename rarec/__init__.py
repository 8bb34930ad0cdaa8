"""rarec: LLM-based recommendation by ID representation alignment (RA-Rec).

The package is organised by stage, data flowing one way:
:mod:`rarec.data` (logs, loaders) -> :mod:`rarec.cf` (ID models) -> alignment
-> frozen LLM -> scores, with :mod:`rarec.model_selection` (leak-free splits)
and :mod:`rarec.metrics` (ranking metrics) beside them.
"""

from ._errors import DataFormatError, LLMMismatchError, ModelFormatError, SaveInProgressError
from ._estimator import RARecommender
from ._version import __version__
from .model_selection import LeaveLastOut

__all__ = [
    "DataFormatError",
    "LLMMismatchError",
    "LeaveLastOut",
    "ModelFormatError",
    "SaveInProgressError",
    "RARecommender",
    "__version__",
]
