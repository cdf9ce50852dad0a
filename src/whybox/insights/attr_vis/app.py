"""Captum Insights' ``AttributionVisualizer`` and ``Batch``, served by :mod:`whybox.app`.

The seed code of a Captum Insights tutorial runs with only its import changed::

    from whybox.insights import AttributionVisualizer, Batch
    from whybox.insights.attr_vis.features import ImageFeature

    visualizer = AttributionVisualizer(
        models=[model],
        score_func=lambda o: torch.nn.functional.softmax(o, 1),
        classes=class_names,
        features=[ImageFeature("Photo", baseline_transforms=[baseline_func],
                               input_transforms=[normalize])],
        dataset=[Batch(input_imgs, labels=labels)],
    )
    visualizer.render()          # in Jupyter: the app in an iframe; elsewhere: its URL
    port = visualizer.serve()    # or serve it and open the printed URL

Beyond Captum: :meth:`AttributionVisualizer.stop`, a context manager, and any number of
visualizers in one process, each on its own port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor

from whybox.app.workspace import Workspace

__all__ = ["AttributionVisualizer", "Batch"]


class Batch:
    """A batch of examples to browse.

    Parameters
    ----------
    inputs : Tensor or tuple of Tensor
        One tensor per feature of the visualizer, each ``(N, ...)``, before the features'
        ``input_transforms``.
    labels : Tensor, optional
        The true class of each example, ``(N,)``.
    additional_args : optional
        Extra forward arguments after the inputs (tensors with ``N`` rows are split per
        example, other values are shared).
    """

    def __init__(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        labels: Tensor | None,
        additional_args: Any = None,
    ) -> None:
        self.inputs = inputs
        self.labels = labels
        self.additional_args = additional_args

    def __repr__(self) -> str:
        inputs = (self.inputs,) if isinstance(self.inputs, Tensor) else tuple(self.inputs)
        shapes = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in inputs]
        return (
            f"Batch(inputs={shapes}, labels={'None' if self.labels is None else len(self.labels)})"
        )


class AttributionVisualizer:
    """Browse a model's predictions on a dataset and explain them, in the browser.

    Parameters
    ----------
    models : nn.Module or list of nn.Module
        One or more models (shown side by side).
    classes : list of str
        Class names, aligned with the models' outputs.
    features : BaseFeature or list of BaseFeature
        One per model input (``ImageFeature``, ``TextFeature``, ``GeneralFeature``).
    dataset : iterable of Batch
        Read lazily, as far as the pages go.
    score_func : callable, optional
        Applied to model outputs to get class scores (e.g. softmax).
    use_label_for_attr : bool
        Pass the explained class to the attribution methods as ``target`` (``False`` for
        a model with one output whose value decides the class).
    """

    def __init__(
        self,
        models: Any,
        classes: list[str],
        features: Any,
        dataset: Iterable[Batch],
        score_func: Callable[..., Any] | None = None,
        use_label_for_attr: bool = True,
    ) -> None:
        if not isinstance(models, list):
            models = [models]
        if not isinstance(features, list):
            features = [features]
        self.models = models
        self.classes = classes
        self.features = features
        self.dataset = dataset
        self.score_func = score_func
        self.use_label_for_attr = use_label_for_attr
        self.workspace = Workspace(
            models=models,
            classes=classes,
            features=features,
            dataset=dataset,
            score_func=score_func,
            use_label_for_attr=use_label_for_attr,
            title="whybox Insights",
        )
        self._server: Any = None

    # -- serving ---------------------------------------------------------------------------
    def create_app(self, **options: Any) -> Any:
        """A fresh FastAPI app over this visualizer (see :func:`whybox.app.create_app`)."""
        from whybox.app.api import create_app

        return create_app(self.workspace, **options)

    def serve(
        self,
        blocking: bool = False,
        debug: bool = False,
        port: int | None = None,
        bind_all: bool = False,
    ) -> int:
        """Start the web app, print its URL and return its port.

        Parameters
        ----------
        blocking : bool
            Serve until Ctrl-C (then stop and return), or return at once.
        debug : bool
            uvicorn debug logging with access logs.
        port : int, optional
            ``None`` picks a free port.
        bind_all : bool
            Listen on all interfaces; by default only 127.0.0.1 (this machine) is served.

        Returns
        -------
        int
            The port. A second call while serving returns the same port.
        """
        from whybox.app.server import LOOPBACK, AppServer

        if self._server is None or not self._server.running:
            host = "0.0.0.0" if bind_all else LOOPBACK
            app = self.create_app(allowed_hosts=None if bind_all else [LOOPBACK, "localhost"])
            self._server = AppServer(
                app, host=host, port=port, log_level="debug" if debug else "warning"
            )
            self._server.start()
        print(f"whybox Insights: {self._server.url}", flush=True)
        port_number = int(self._server.port)
        if blocking:
            self._server.wait()
        return port_number

    def stop(self) -> None:
        """Stop the server (its port is released; :meth:`serve` starts a new one)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def port(self) -> int | None:
        """The port being served, or ``None``."""
        return int(self._server.port) if self._server is not None and self._server.running else None

    @property
    def url(self) -> str | None:
        """The URL being served, or ``None``."""
        return self._server.url if self.port is not None else None

    def render(self, debug: bool = True, *, height: int = 820) -> None:
        """Show the app: in Jupyter an iframe to the local server, elsewhere its URL.

        Parameters
        ----------
        debug : bool
            Accepted for Captum compatibility (server logs stay quiet unless ``serve``'s
            ``debug`` is set).
        height : int
            Height of the notebook iframe in pixels.
        """
        from whybox.viz.html import in_notebook

        if self.port is None:
            self.serve(blocking=False)
        if in_notebook():
            from IPython.display import IFrame, display

            display(IFrame(self.url, width="100%", height=height))
        else:
            print(f"Open {self.url} in a browser to use whybox Insights.", flush=True)

    def __enter__(self) -> AttributionVisualizer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f" serving {self.url}" if self.url else ""
        return f"<AttributionVisualizer {len(self.models)} model(s), {len(self.classes)} classes{where}>"
