"""Titanic_Basic_Interpret, House_Prices_Regression_Interpret, Distributed_Attribution and
DLRM_Tutorial calls with ``captum`` renamed to ``whybox``, on small local models."""

import torch
from torch import nn

from tutorials._tut import assert_close, both, lib, seed


class Titanic(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(12, 12)
        self.sigmoid1 = nn.Sigmoid()
        self.linear2 = nn.Linear(12, 8)
        self.sigmoid2 = nn.Sigmoid()
        self.linear3 = nn.Linear(8, 2)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(
            self.linear3(self.sigmoid2(self.linear2(self.sigmoid1(self.linear1(x)))))
        )


class House(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin1, self.relu1 = nn.Linear(8, 32), nn.ReLU()
        self.lin2, self.relu2 = nn.Linear(32, 16), nn.ReLU()
        self.lin4 = nn.Linear(16, 1)

    def forward(self, x):
        return self.lin4(self.relu2(self.lin2(self.relu1(self.lin1(x)))))


def test_titanic():
    seed(1)
    net = Titanic()
    x = torch.rand(20, 12) * torch.tensor([60, 3, 3, 100] + [1] * 8)

    def run(name):
        A = lib(name, "captum.attr")
        xi = x.clone().requires_grad_()
        attr, delta = A.IntegratedGradients(net).attribute(
            xi, target=1, return_convergence_delta=True
        )
        lc = A.LayerConductance(net, net.sigmoid1).attribute(xi, target=1)
        nc = A.NeuronConductance(net, net.sigmoid1)
        # the tutorial's default method, riemann_trapezoid (Captum's weights in the facade)
        n0 = nc.attribute(xi, neuron_selector=0, target=1)
        n10 = nc.attribute(xi, neuron_selector=10, target=1, method="riemann_left")
        return [t.detach() for t in (attr, delta, lc, n0, n10)]

    assert_close(*both(run))


def test_house_prices():
    seed(0)
    model = House().eval()
    x_train, x_test = torch.randn(32, 8), torch.randn(10, 8)

    def run(name):
        A = lib(name, "captum.attr")
        ig = A.IntegratedGradients(model)
        out = {"ig": ig.attribute(x_test, n_steps=50)}
        seed(1)
        out["nt"] = A.NoiseTunnel(ig).attribute(x_test)
        out["dl"] = A.DeepLift(model).attribute(x_test)
        seed(1)
        out["gs"] = A.GradientShap(model).attribute(x_test, x_train)
        out["fa"] = A.FeatureAblation(model).attribute(x_test)
        out["lc"] = A.LayerConductance(model, model.lin4).attribute(
            x_test, n_steps=100, attribute_to_layer_input=True
        )
        return {k: v.detach() for k, v in out.items()}

    assert_close(*both(run))


def test_distributed_chunks_and_data_parallel():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear1 = nn.Linear(3, 4)
            self.linear1.weight = nn.Parameter(torch.ones(4, 3))
            self.linear1.bias = nn.Parameter(torch.tensor([-10.0, 1.0, 1.0, 1.0]))
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.linear1(x))

    model = Toy()
    batch = 1.0 * torch.arange(12).reshape(4, 3)

    def run(name):
        IG = lib(name, "captum.attr").IntegratedGradients
        full = IG(model).attribute(batch, target=0)
        chunks = torch.cat([IG(model).attribute(c, target=0) for c in batch.chunk(2)])
        dp = IG(nn.DataParallel(model)).attribute(batch, target=0)
        return [t.detach() for t in (full, chunks, dp)]

    c, w = both(run)
    assert_close(c, w)
    assert_close(w[0], w[1])


def test_dlrm_style_embedding_bags():
    seed(0)

    class DLRM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb_l = nn.ModuleList([nn.EmbeddingBag(20, 4, mode="sum") for _ in range(2)])
            self.bot_l = nn.Sequential(nn.Linear(5, 4), nn.ReLU())
            self.top_l = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid())

        def sequential_forward(self, dense_x, *embs):
            return self.top_l(torch.cat([self.bot_l(dense_x), *embs], dim=1))

    dlrm = DLRM().eval()
    dense = torch.rand(4, 5)
    offsets = torch.arange(4) * 2
    embs = tuple(e(torch.randint(0, 20, (8,)), offsets).detach() for e in dlrm.emb_l)

    def run(name):
        A = lib(name, "captum.attr")
        ig = A.IntegratedGradients(dlrm.sequential_forward).attribute((dense, *embs), n_steps=10)
        lc = A.LayerConductance(dlrm.sequential_forward, dlrm.top_l[1]).attribute(
            (dense, *embs), n_steps=10
        )
        nc = A.NeuronConductance(dlrm.sequential_forward, dlrm.top_l[1]).attribute(
            (dense, *embs), neuron_selector=3, n_steps=10, method="gausslegendre"
        )
        return [t.detach() for t in (*ig, lc, *nc)]

    assert_close(*both(run))
