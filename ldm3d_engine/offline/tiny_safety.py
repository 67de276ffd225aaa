"""The tiny models' image safety checker: diffusers' ``StableDiffusionSafetyChecker`` (a CLIP
vision model, its projection and the concept embeddings with their thresholds) at a tiny size,
random weights, saved as Intel's folders ship it (``safety_checker/`` + ``feature_extractor/``).

Its thresholds are 1.0, which a cosine similarity never exceeds, so it flags nothing until a
test lowers them or sets a concept to a picture's own embedding (``SafetyChecker.embed`` gives them);
the code path is the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: The checker's input size (the real one's is 224).
IMAGE_SIZE = 32


def write_safety_checker(folder: Path, seed: int) -> None:
    """Write ``safety_checker/`` and ``feature_extractor/`` into model folder ``folder``."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessorPil

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        # At random weights the class token and the positions drown the picture (two noise pictures'
        # embeddings agree to 0.99); weighted towards the patches, they differ as a trained model's do.
        embeddings = checker.vision_model.embeddings
        embeddings.patch_embedding.weight.mul_(20.0)
        embeddings.class_embedding.zero_()
        embeddings.position_embedding.weight.mul_(0.05)
        checker.concept_embeds.copy_(torch.randn_like(checker.concept_embeds))
        checker.special_care_embeds.copy_(torch.randn_like(checker.special_care_embeds))
        checker.concept_embeds_weights.fill_(1.0)
        checker.special_care_embeds_weights.fill_(1.0)
    checker.save_pretrained(folder / "safety_checker")
    CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(folder / "feature_extractor")
