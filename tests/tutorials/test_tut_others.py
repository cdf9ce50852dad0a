"""IMDB_TorchText_Interpret (text view), CIFAR_Captum_Robustness, TracInCP_Tutorial,
TCAV_Image / TCAV_NLP, Llama2_LLM_Attribution and the Captum Insights tutorials, with
``captum`` renamed to ``whybox``, on small local models."""

import json
import os
import re
import urllib.request

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tutorials._tut import assert_close, both, lib, patch_captum_text_view, seed


class TextCNN(nn.Module):
    def __init__(self, vocab=16, dim=12, pad=1):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=pad)
        self.convs = nn.ModuleList([nn.Conv2d(1, 4, (fs, dim)) for fs in (2, 3)])
        self.fc = nn.Linear(8, 1)

    def forward(self, text):
        e = self.embedding(text).unsqueeze(1)
        c = [torch.relu(conv(e)).squeeze(3) for conv in self.convs]
        return self.fc(torch.cat([x.max(dim=2).values for x in c], dim=1))


def test_imdb_lig_and_text_view(monkeypatch):
    patch_captum_text_view(monkeypatch)
    seed(0)
    model = TextCNN().eval()
    words = "it was a fantastic performance ! pad".split()
    ids = torch.tensor([[2, 3, 4, 5, 6, 7, 1]])

    def run(name):
        A = lib(name, "captum.attr")
        ref = (
            A.TokenReferenceBase(reference_token_idx=1)
            .generate_reference(7, device="cpu")
            .unsqueeze(0)
        )
        attr, delta = A.LayerIntegratedGradients(model, model.embedding).attribute(
            ids, ref, n_steps=20, return_convergence_delta=True
        )
        pred = torch.sigmoid(model(ids)).item()
        summed = attr.sum(dim=2).squeeze(0)
        summed = (summed / torch.norm(summed)).detach().numpy()
        rec = A.visualization.VisualizationDataRecord(
            summed, pred, "pos", "pos", "pos", summed.sum(), words, delta
        )
        html = A.visualization.visualize_text([rec]).data
        # whybox's table is well-formed (its markup differs); the colours and labels match
        return (
            ref,
            attr.detach(),
            delta.detach(),
            re.findall(r"hsl\([^)]*\)", html),
            re.findall(r"<b>([^<]*)</b>", html),
        )

    assert_close(*both(run))


def test_robustness():
    seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 10)
    ).eval()
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    label = torch.tensor([int(net(image).argmax())])
    images, labels = torch.rand(3, 3, 16, 16), torch.tensor([1, 2, 3])

    def metric(model_out, target):
        logit = torch.gather(model_out, 1, target.reshape(len(target), 1)).detach()
        return logit, (model_out.argmax(dim=1) == target).float()

    def run(name):
        R = lib(name, "captum.robust")
        out = {
            "fgsm": R.FGSM(net, lower_bound=-1, upper_bound=1).perturb(
                image, epsilon=0.16, target=label
            )
        }
        pgd = R.PGD(net, nn.CrossEntropyLoss(reduction="none"), lower_bound=-1, upper_bound=1)
        out["pgd"] = pgd.perturb(
            inputs=image,
            radius=0.13,
            step_size=0.02,
            step_num=7,
            target=torch.tensor([2]),
            targeted=True,
        )
        mp = R.MinParamPerturbation(
            forward_func=net,
            attack=lambda x, k: x * (torch.arange(x.numel()).reshape(x.shape) >= k),
            arg_name="k",
            mode="linear",
            arg_min=0,
            arg_max=768,
            arg_step=16,
        )
        pert, k = mp.evaluate(image, target=label)
        out["minparam"] = (None if pert is None else pert.detach(), k)
        comp = R.AttackComparator(
            forward_func=net, metric=metric, preproc_fn=lambda x: (x - 0.5) / 0.5
        )
        comp.add_attack(lambda x: torch.rot90(x, 1, dims=(2, 3)), "Rotation", num_attempts=2)
        comp.add_attack(
            R.FGSM(net),
            "FGSM",
            attack_kwargs={"epsilon": 0.15},
            apply_before_preproc=False,
            additional_attack_arg_names=["target"],
            num_attempts=1,
        )
        out["evaluate"] = comp.evaluate(images, target=labels)
        out["summary"] = comp.summary()
        comp.reset()
        out["reset"] = comp.summary()
        return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}

    assert_close(*both(run))


def test_tracin(tmp_path):
    seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    data = TensorDataset(torch.randn(24, 6), torch.randint(0, 3, (24,)))
    paths = []
    for i in range(2):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
        paths.append(str(tmp_path / f"checkpoint-{i}.pt"))
        torch.save({"model_state_dict": net.state_dict(), "learning_rate": 0.1}, paths[-1])

    def load(model, path):
        state = torch.load(path)
        model.load_state_dict(state["model_state_dict"])
        return state["learning_rate"]

    test = (torch.randn(3, 6), torch.tensor([0, 1, 2]))

    def run(name):
        influence = lib(name, "captum.influence")
        fast = influence.TracInCPFast(
            model=net,
            final_fc_layer=list(net.children())[-1],
            train_dataset=data,
            checkpoints=paths,
            checkpoints_load_func=load,
            loss_fn=nn.CrossEntropyLoss(reduction="sum"),
            batch_size=8,
            vectorize=False,
        )
        prop = fast.influence(test, k=4, proponents=True, show_progress=True)
        opp = fast.influence(test, k=4, proponents=False)
        cp = influence.TracInCP(
            net,
            data,
            paths,
            checkpoints_load_func=load,
            loss_fn=nn.CrossEntropyLoss(reduction="none"),
            batch_size=8,
        )
        return (
            tuple(prop),
            tuple(opp),
            fast.influence(test),
            fast.self_influence(show_progress=True),
            cp.influence(test),
            cp.self_influence(),
        )

    assert_close(*both(run))


def _tcav_setup(tmp_path):
    seed(0)
    model = nn.Sequential()
    model.add_module("conv0", nn.Conv2d(3, 6, 3))
    model.add_module("relu", nn.ReLU())
    model.add_module("pool", nn.AdaptiveAvgPool2d(4))
    model.add_module("conv1", nn.Conv2d(6, 8, 3, padding=1))
    model.add_module("conv2", nn.Conv2d(8, 8, 3, padding=1))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(8 * 16, 5))
    model.eval()
    g = torch.Generator().manual_seed(0)
    for name, shift in (("striped", 0.5), ("random_0", 0.0)):
        os.makedirs(tmp_path / "concepts" / name)
        for i in range(10):
            t = torch.rand(3, 16, 16, generator=g) + shift * (torch.arange(16) % 4 < 2).float()
            torch.save(t, tmp_path / "concepts" / name / f"{i}.pt")
    return model, torch.rand(6, 3, 16, 16, generator=g)


def _tcav_run(tmp_path, model, inputs, layers):
    def run(name):
        C, A = lib(name, "captum.concept"), lib(name, "captum.attr")
        DI = lib(name, "captum.concept._utils.data_iterator")
        CM = lib(name, "captum.concept._utils.common")
        os.chdir(tmp_path / name)

        def concept(cname, cid):
            ds = DI.CustomIterableDataset(torch.load, str(tmp_path / "concepts" / cname) + "/")
            return C.Concept(id=cid, name=cname, data_iter=DI.dataset_to_dataloader(ds))

        sets = [[concept("striped", 0), concept("random_0", 1)]]
        tcav = C.TCAV(
            model=model,
            layers=layers,
            layer_attr_method=A.LayerIntegratedGradients(model, None, multiply_by_inputs=False),
        )
        seed(0)
        scores = tcav.interpret(inputs=inputs, experimental_sets=sets, target=1, n_steps=4)
        key = CM.concepts_to_str(sets[0])
        return {
            layer: {m: scores[key][layer][m] for m in ("sign_count", "magnitude")}
            for layer in layers
        }

    for name in ("captum", "whybox"):
        os.makedirs(tmp_path / name)
    old = os.getcwd()
    try:
        return both(run)
    finally:
        os.chdir(old)


def test_tcav_one_layer(tmp_path):
    model, inputs = _tcav_setup(tmp_path)
    assert_close(*_tcav_run(tmp_path, model, inputs, ["conv2"]))


def test_tcav_two_layers(tmp_path):
    model, inputs = _tcav_setup(tmp_path)
    assert_close(*_tcav_run(tmp_path, model, inputs, ["conv1", "conv2"]))


@pytest.fixture(scope="module")
def tiny_llama():
    transformers = pytest.importorskip("transformers")
    from llm._toy import VOCAB, tokenizer

    seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        bos_token_id=1,
        eos_token_id=3,
        pad_token_id=0,
    )
    return transformers.LlamaForCausalLM(cfg).eval(), tokenizer()


def test_llm_gradient_attribution(tiny_llama):
    model, tok = tiny_llama

    def run(name):
        A = lib(name, "captum.attr")
        inp = A.TextTokenInput("d3 K5 d1 K2 ?", tok, skip_tokens=[1])
        res = A.LLMGradientAttribution(
            A.LayerIntegratedGradients(model, model.model.embed_tokens), tok
        ).attribute(inp, target="V5 V2", n_steps=4)
        return res.seq_attr, res.token_attr, res.input_tokens, res.output_tokens

    assert_close(*both(run))


def test_llm_feature_ablation_template(tiny_llama):
    """The Llama2 tutorial's LLMAttribution(FeatureAblation) over a template. Captum's
    default ``use_cached_outputs=True`` gives wrong numbers for every target token after the
    first on transformers 5 (its cache is advanced past the prompt); whybox's defaults give
    the right ones, which are Captum's with ``use_cached_outputs=False``."""
    model, tok = tiny_llama

    def run(name):
        A = lib(name, "captum.attr")
        inp = A.TextTemplateInput(template="{} d1 {} d2 {} ?", values=["K1", "K2", "d3"])
        extra = {"use_cached_outputs": False} if name == "captum" else {}
        res = A.LLMAttribution(A.FeatureAblation(model), tok).attribute(
            inp, target="V1 V2", **extra
        )
        return res.seq_attr, res.token_attr

    assert_close(*both(run))


def test_insights_serve_and_stop():
    from whybox.insights import AttributionVisualizer, Batch
    from whybox.insights.attr_vis.features import ImageFeature, TextFeature

    class VQA(nn.Module):
        def __init__(self):
            super().__init__()
            self.img = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.emb = nn.Embedding(8, 2)
            self.fc = nn.Linear(4, 3)

        def forward(self, image, question):
            return self.fc(torch.cat([self.img(image), self.emb(question).mean(1)], 1))

    features = [
        ImageFeature(
            "Picture",
            baseline_transforms=[lambda x: x * 0],
            input_transforms=[lambda x: (x - 0.5) / 0.5],
        ),
        TextFeature(
            "Question",
            input_transforms=[lambda x: x],
            baseline_transforms=[lambda x: x * 0],
            visualization_transform=lambda t: [f"w{int(i)}" for i in t.squeeze(0)],
        ),
    ]
    dataset = [
        Batch(
            inputs=(torch.rand(2, 3, 8, 8), torch.randint(0, 8, (2, 4))),
            labels=torch.tensor([0, 2]),
        )
    ]
    with AttributionVisualizer(
        models=[VQA().eval()],
        classes=["a", "b", "c"],
        features=features,
        dataset=dataset,
        score_func=lambda o: torch.softmax(o, 1),
    ) as vis:
        port = vis.serve(blocking=False)
        assert vis.serve(blocking=False) == port

        def get(path):
            return json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).read()
            )

        assert get("/api/health")["status"] == "ok"
        (ws,) = get("/api/workspaces")
        assert [f["type"] for f in ws["features"]] == ["image", "text"]
        assert len(get(f"/api/workspaces/{ws['id']}/examples")["items"]) == 2
    assert vis.port is None
