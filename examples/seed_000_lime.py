"""Seed 000 replayed: LIME on segmented images and LimeBase on a news-like text model.

The seed explains a pretrained ResNet on a PASCAL VOC image whose segmentation mask serves
as superpixels, then an EmbeddingBag topic classifier with a custom ``LimeBase``. Here the
same code runs on whybox (only the imports change) with models made locally:

* images: a small CNN trained for a few seconds on synthetic "scenes" (a television = a
  bright blue screen, a rocking chair = a brown block, on a grey room), with a segmentation
  mask that uses VOC-style ids (0 background, 9 chair, 20 tv, 255 border);
* text: an ``nn.EmbeddingBag`` classifier trained on a built-in four-topic headline set.

Usage: ``python examples/seed_000_lime.py [--out DIR] [--smoke]``; writes the views to
DIR (default ``out/examples/seed_000``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from whybox.attr import (  # noqa: E402
    Lime,
    LimeBase,
    SkLearnLasso,
    SkLearnLinearRegression,
    get_exp_kernel_similarity_function,
)
from whybox.attr import visualization as viz  # noqa: E402

CLASSES = ["television", "rocking_chair"]
TV, CHAIR, BORDER = 20, 9, 255  # VOC segment ids


# -- part 1: images --------------------------------------------------------------------------
def scene(tv: bool, chair: bool, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3x32x32 room (values in [0, 1]) and its VOC-style segmentation mask."""
    image = 0.45 + 0.05 * torch.randn(3, 32, 32, generator=generator)
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = BORDER, BORDER, BORDER, BORDER
    image[:, mask == BORDER] = 0.9
    if tv:
        r, c = (int(v) for v in torch.randint(3, 12, (2,), generator=generator))
        image[:, r : r + 9, c : c + 12] = torch.tensor([0.1, 0.3, 0.95])[:, None, None]
        mask[r : r + 9, c : c + 12] = TV
    if chair:
        r, c = (int(v) for v in torch.randint(18, 22, (2,), generator=generator))
        image[:, r : r + 8, c - 16 : c - 6] = torch.tensor([0.85, 0.45, 0.05])[:, None, None]
        mask[r : r + 8, c - 16 : c - 6] = CHAIR
    return image.clamp(0, 1), mask


def train_image_model(steps: int) -> nn.Module:
    """Two sigmoid outputs: is there a television, is there a rocking chair."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        flags = torch.randint(0, 2, (32, 2), generator=generator).bool()
        batch = torch.stack([scene(bool(t), bool(c), generator)[0] for t, c in flags])
        loss = F.binary_cross_entropy_with_logits(model(batch), flags.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def show_attr(attr_map: torch.Tensor, title: str, path: Path) -> None:
    figure, _ = viz.visualize_image_attr(
        attr_map.permute(1, 2, 0).numpy(),  # adjust shape to height, width, channels
        method="heat_map",
        sign="all",
        show_colorbar=True,
        title=title,
        use_pyplot=False,
    )
    figure.savefig(path, bbox_inches="tight")


def image_part(out: Path, smoke: bool) -> None:
    resnet = train_image_model(10 if smoke else 300)
    img, seg_mask = scene(True, True, torch.Generator().manual_seed(439))
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.2))
    for ax, name, source in zip(figure.subplots(1, 2), ["Image", "Mask"], [img, seg_mask]):
        ax.imshow(source.permute(1, 2, 0).numpy() if source.dim() == 3 else source.numpy())
        ax.set_title(f"{name} 439")
        ax.axis("off")
    figure.savefig(out / "image_439.png", bbox_inches="tight")

    output_probs = torch.sigmoid(resnet(img.unsqueeze(0))).squeeze(0)
    for i, name in enumerate(CLASSES):
        print(f"{name} ({i}): {output_probs[i].item():.4f}")

    # map segment ids to contiguous feature-group ids, as the seed does
    seg_ids = sorted(seg_mask.unique().tolist())
    print("Segmentation IDs:", seg_ids)
    feature_mask = seg_mask.clone()
    for i, seg_id in enumerate(seg_ids):
        feature_mask[feature_mask == seg_id] = i
    print("Feature mask IDs:", feature_mask.unique().tolist())

    exp_eucl_distance = get_exp_kernel_similarity_function("euclidean", kernel_width=1000)
    lr_lime = Lime(
        resnet,
        interpretable_model=SkLearnLinearRegression(),  # built-in wrapped sklearn LinearRegression
        similarity_func=exp_eucl_distance,
    )
    label_idx = output_probs.argmax().unsqueeze(0)
    attrs = lr_lime.attribute(
        img.unsqueeze(0),
        target=label_idx,
        feature_mask=feature_mask.unsqueeze(0),
        n_samples=40,
        perturbations_per_eval=16,
        show_progress=not smoke,
    ).squeeze(0)
    print("Attribution range:", attrs.min().item(), "to", attrs.max().item())
    show_attr(
        attrs, f"LIME (linear regression), {CLASSES[int(label_idx)]}", out / "lime_linear.png"
    )

    # Lasso, and every one of the 2^4 combinations instead of random samples
    n_interpret_features = len(seg_ids)

    def iter_combinations(*args, **kwargs):
        for i in range(2**n_interpret_features):
            yield torch.tensor([int(d) for d in bin(i)[2:].zfill(n_interpret_features)]).unsqueeze(
                0
            )

    lasso_lime = Lime(
        resnet,
        interpretable_model=SkLearnLasso(alpha=0.08),
        similarity_func=exp_eucl_distance,
        perturb_func=iter_combinations,
    )
    for target, name in ((label_idx, "lasso_top"), (CLASSES.index("rocking_chair"), "lasso_chair")):
        attrs = lasso_lime.attribute(
            img.unsqueeze(0),
            target=target,
            feature_mask=feature_mask.unsqueeze(0),
            n_samples=2**n_interpret_features,
            perturbations_per_eval=16,
            show_progress=not smoke,
            return_input_shape=True,
        ).squeeze(0)
        print(f"{name}: attribution range", attrs.min().item(), "to", attrs.max().item())
        title = f"LIME (Lasso, exhaustive), {CLASSES[int(target)]}"
        show_attr(attrs, title, out / f"lime_{name}.png")

    # one training point of the surrogate, by hand: sample, transform, label, similarity
    generator = iter_combinations()
    for _ in range(13 + 1):
        sample_interp_inp = next(generator)
    print("Perturbed interpretable sample:", sample_interp_inp)
    perturbed_img = lasso_lime.from_interp_rep_transform(
        sample_interp_inp, img.unsqueeze(0), feature_mask=feature_mask.unsqueeze(0), baselines=0
    )
    perturbed_outputs = resnet(perturbed_img).squeeze(0).detach()
    print("Label of the perturbed sample as television:", perturbed_outputs[label_idx.item()])
    print("Sample similarity:", exp_eucl_distance(img.unsqueeze(0), perturbed_img, None))
    figure, _ = viz.visualize_image_attr(
        None,
        perturbed_img.squeeze(0).permute(1, 2, 0).numpy(),
        method="original_image",
        title="perturbed sample 13",
        use_pyplot=False,
    )
    figure.savefig(out / "perturbed_sample.png", bbox_inches="tight")


# -- part 2: text ----------------------------------------------------------------------------
HEADLINES = {
    0: [  # World
        "leaders meet in geneva to discuss the peace treaty",
        "the prime minister visits troops near the border",
        "elections held as the government faces protests",
        "united nations calls for a ceasefire in the region",
    ],
    1: [  # Sports
        "phelps wins gold as the relay team beats australia",
        "the coach praises his team after the cup final",
        "olympic gymnast wins eight medals in the games",
        "striker scores twice as the club wins the league",
    ],
    2: [  # Business
        "shares fall as the bank reports lower profits",
        "oil prices rise and markets close higher",
        "the company plans to cut jobs after weak sales",
        "investors buy stocks as interest rates fall",
    ],
    3: [  # Sci/Tec
        "new software update fixes a security flaw",
        "scientists launch a probe to study the planet",
        "the chip maker unveils a faster processor",
        "researchers build a robot that learns to walk",
    ],
}


def tokenizer(line: str) -> list[str]:
    """torchtext's ``basic_english`` in one line: lower case, words and punctuation."""
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", line.lower())


class EmbeddingBagModel(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, num_class: int) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim)
        self.linear = nn.Linear(embed_dim, num_class)

    def forward(self, inputs: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(inputs, offsets)
        return self.linear(embedded)


def text_part(out: Path, smoke: bool) -> None:
    voc = {"<unk>": 0}
    for lines in HEADLINES.values():
        for line in lines:
            for token in tokenizer(line):
                voc.setdefault(token, len(voc))

    def collate_batch(batch):
        labels = torch.tensor([label for label, _ in batch])
        text_list = [tokenizer(line) for _, line in batch]
        text = torch.tensor([voc.get(t, 0) for tokens in text_list for t in tokens])
        offsets = torch.tensor([0] + [len(tokens) for tokens in text_list][:-1]).cumsum(dim=0)
        return labels, text, offsets

    torch.manual_seed(0)
    eb_model = EmbeddingBagModel(len(voc), 16, len(HEADLINES))
    data = [(label, line) for label, lines in HEADLINES.items() for line in lines]
    optimizer = torch.optim.Adam(eb_model.parameters(), lr=0.05)
    labels, text, offsets = collate_batch(data)
    for _ in range(100):
        loss = F.cross_entropy(eb_model(text, offsets), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    eb_model.eval()

    test_label = 1  # {0: World, 1: Sports, 2: Business, 3: Sci/Tec}
    test_line = (
        "US Men Have Right Touch in Relay Duel Against Australia. So Michael Phelps is not "
        "going to match the seven gold medals won by Mark Spitz in the games."
    )
    test_labels, test_text, test_offsets = collate_batch([(test_label, test_line)])
    probs = F.softmax(eb_model(test_text, test_offsets), dim=1).squeeze(0)
    print("Prediction probability:", round(probs[test_labels[0]].item(), 4))

    # remove the batch dimension for the embedding-bag model
    def forward_func(text, offsets):
        return eb_model(text.squeeze(0), offsets)

    # encode text indices into latent representations & calculate cosine similarity
    def exp_embedding_cosine_distance(original_inp, perturbed_inp, _, **kwargs):
        original_emb = eb_model.embedding(original_inp, None)
        perturbed_emb = eb_model.embedding(perturbed_inp, None)
        distance = 1 - F.cosine_similarity(original_emb, perturbed_emb, dim=1)
        return torch.exp(-1 * (distance**2) / 2)

    # binary vector where each word is selected independently and uniformly at random
    def bernoulli_perturb(text, **kwargs):
        probs = torch.ones_like(text) * 0.5
        return torch.bernoulli(probs).long()

    # remove absent tokens based on the interpretable representation sample
    def interp_to_input(interp_sample, original_input, **kwargs):
        return original_input[interp_sample.bool()].view(original_input.size(0), -1)

    lasso_lime_base = LimeBase(
        forward_func,
        interpretable_model=SkLearnLasso(alpha=0.08),
        similarity_func=exp_embedding_cosine_distance,
        perturb_func=bernoulli_perturb,
        perturb_interpretable_space=True,
        from_interp_rep_transform=interp_to_input,
        to_interp_rep_transform=None,
    )
    torch.manual_seed(0)  # the Bernoulli draws come from torch's global generator
    attrs = lasso_lime_base.attribute(
        test_text.unsqueeze(0),  # add batch dimension for Captum's conventions
        target=test_labels,
        additional_forward_args=(test_offsets,),
        n_samples=300 if smoke else 32000,
        show_progress=not smoke,
    ).squeeze(0)
    print("Attribution range:", attrs.min().item(), "to", attrs.max().item())

    def show_text_attr(attrs):
        def rgb(x):
            return "255,0,0" if x < 0 else "0,255,0"

        def alpha(x):
            return abs(x) ** 0.5

        token_marks = [
            f'<mark style="background-color:rgba({rgb(attr)},{alpha(attr)})">{token}</mark>'
            for token, attr in zip(tokenizer(test_line), attrs.tolist())
        ]
        return "<p>" + " ".join(token_marks) + "</p>"

    html = f"<!DOCTYPE html><meta charset='utf-8'><title>LimeBase</title>{show_text_attr(attrs)}"
    (out / "text_lime.html").write_text(html, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/examples/seed_000", help="folder for the views")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (CI, a few seconds)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image_part(out, args.smoke)
    text_part(out, args.smoke)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


if __name__ == "__main__":
    main()
