"""Is a heatmap real? Faithfulness scores (deletion / insertion) and the model-randomisation sanity check.

``faithfulness`` deletes (or inserts) a map's most salient pixels first and
records the class probability (Petsiuk et al. 2018), beside the same score for a
seeded random map as smooth as the map; ``sanity`` re-initialises the model from
the classifier down, block by block, on a private copy and measures how much the
map changes (Adebayo et al. 2018); ``similarity`` the rank correlation and SSIM
it uses::

    from viz.quality import score_faithfulness, run_sanity_check

    f = score_faithfulness(loaded, image, method="gradcam", steps=32)
    f.score.deletion_auc, f.random.deletion_auc, f.to_dict()
    s = run_sanity_check(loaded, image, method="gradcam")
    [(step.randomized, step.spearman) for step in s.steps]
"""

from viz.quality.faithfulness import (
    Faithfulness,
    FaithfulnessScore,
    area_under_curve,
    make_random_map,
    rank_methods,
    score_explanations,
    score_faithfulness,
    score_maps,
    score_methods,
)
from viz.quality.sanity import SanityCheck, SanityStep, list_cascade_blocks, randomize_block, run_sanity_check
from viz.quality.similarity import rank_average, spearman, ssim

__all__ = [
    "Faithfulness",
    "FaithfulnessScore",
    "SanityCheck",
    "SanityStep",
    "area_under_curve",
    "list_cascade_blocks",
    "make_random_map",
    "randomize_block",
    "rank_average",
    "rank_methods",
    "run_sanity_check",
    "score_explanations",
    "score_faithfulness",
    "score_maps",
    "score_methods",
    "spearman",
    "ssim",
]
