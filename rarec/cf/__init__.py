"""Stage 1 of RA-Rec: collaborative-filtering (ID) models and baselines."""

from ._popularity import PopularityRecommender

__all__ = ["PopularityRecommender"]
