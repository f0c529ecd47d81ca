"""DPT training objectives, one small pure function per paper equation.

* :mod:`~dptune.losses.boxes` -- box formats, IoU, generalized IoU (used by Eqs. 5 and 7);
* :mod:`~dptune.losses.matching` -- image-text matching, Eqs. 3 (T->I) and 4 (I->T);
* :mod:`~dptune.losses.grounding` -- REC: query matching (Eq. 5), text->object (Eq. 6), grounding (Eq. 7);
* :mod:`~dptune.losses.combined` -- :class:`LossWeights` and :func:`dpt_losses` (Eq. 8).

Beyond the paper's equations: :mod:`~dptune.losses.denoising` (the MSE anchor and a denoising contrast).
"""

from dptune.losses.boxes import (
    cxcywh_to_xyxy,
    generalized_iou,
    iou,
    pairwise_generalized_iou,
    pairwise_iou,
    xyxy_to_cxcywh,
)
from dptune.losses.combined import LossWeights, dpt_losses
from dptune.losses.grounding import (
    Assignment,
    box_l1_loss,
    giou_loss,
    grounding_loss,
    match_queries,
    matching_cost,
    probability_loss,
    text_to_object_loss,
)
from dptune.losses.matching import (
    image_to_text_loss,
    in_batch_matching_loss,
    matching_credit,
    text_to_image_loss,
)

__all__ = [
    "Assignment",
    "LossWeights",
    "box_l1_loss",
    "cxcywh_to_xyxy",
    "dpt_losses",
    "generalized_iou",
    "giou_loss",
    "grounding_loss",
    "image_to_text_loss",
    "in_batch_matching_loss",
    "iou",
    "match_queries",
    "matching_credit",
    "matching_cost",
    "pairwise_generalized_iou",
    "pairwise_iou",
    "probability_loss",
    "text_to_image_loss",
    "text_to_object_loss",
    "xyxy_to_cxcywh",
]
