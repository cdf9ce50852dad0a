"""Concept activation vectors and their cache on disk (Captum's ``CAV``).

A CAV file is what Captum writes, at the same path
(``<save_path>/<model_id>/<concept ids>-<layer>.pkl``, a ``torch.save`` of
``{"concept_ids", "concept_names", "layer", "stats"}``), so CAVs trained by Captum load
here and the other way round.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import torch

from .concepts import Concept, concepts_to_str

__all__ = ["CAV"]


class CAV:
    """The CAVs of one experimental set in one layer, with their classifier's statistics.

    Parameters
    ----------
    concepts : list of Concept
        The experimental set (only ids and names are saved).
    layer : str
        The layer's name in the model (``"block.conv"``).
    stats : dict, optional
        ``{"weights": Tensor (C, F), "classes": list of C concept ids, "accs": ...}``:
        row ``i`` of ``weights`` is the CAV of concept ``classes[i]`` over the layer's ``F``
        flattened features.
    save_path : str, default ``"./cav/"``
        Root folder of the cache.
    model_id : str, default ``"default_model_id"``
        The model's folder under ``save_path``.
    """

    def __init__(
        self,
        concepts: list[Concept],
        layer: str,
        stats: dict[str, Any] | None = None,
        save_path: str = "./cav/",
        model_id: str = "default_model_id",
    ) -> None:
        self.concepts = concepts
        self.layer = layer
        self.stats = stats
        self.save_path = save_path
        self.model_id = model_id

    @staticmethod
    def assemble_save_path(path: str, model_id: str, concepts: list[Concept], layer: str) -> str:
        """``<path>/<model_id>/<ids>-<layer>.pkl`` (``"./cav/default_model_id/0-1-fc.pkl"``).

        Parameters
        ----------
        path, model_id : str
        concepts : list of Concept
        layer : str

        Returns
        -------
        str
        """
        return os.path.join(path, model_id, concepts_to_str(concepts) + "-" + layer + ".pkl")

    def save(self) -> None:
        """Write this CAV to :meth:`assemble_save_path` (Captum's file format)."""
        saved = {
            "concept_ids": [c.id for c in self.concepts],
            "concept_names": [c.name for c in self.concepts],
            "layer": self.layer,
            "stats": self.stats,
        }
        torch.save(
            saved, CAV.assemble_save_path(self.save_path, self.model_id, self.concepts, self.layer)
        )

    @staticmethod
    def create_cav_dir_if_missing(save_path: str, model_id: str) -> None:
        """Create ``<save_path>/<model_id>`` if it does not exist.

        Parameters
        ----------
        save_path, model_id : str
        """
        os.makedirs(os.path.join(save_path, model_id), exist_ok=True)

    @staticmethod
    def load(cavs_path: str, model_id: str, concepts: list[Concept], layer: str) -> CAV | None:
        """The cached CAV of ``concepts`` in ``layer``, or ``None`` if there is none.

        Parameters
        ----------
        cavs_path : str
            Root folder of the cache.
        model_id : str
        concepts : list of Concept
        layer : str

        Returns
        -------
        CAV or None
            Its concepts carry ids and names only (``data_iter`` is ``None``).
        """
        path = CAV.assemble_save_path(cavs_path, model_id, concepts, layer)
        if not os.path.exists(path):
            return None
        with _numpy_globals():
            saved = torch.load(path)
        loaded = [
            Concept(concept_id, name, None)
            for concept_id, name in zip(saved["concept_ids"], saved["concept_names"])
        ]
        return CAV(loaded, saved["layer"], saved["stats"])


def _numpy_globals() -> Any:
    """Allow the numpy objects Captum's CAV files hold (their ``classes`` are numpy arrays)
    through ``torch.load``'s weights-only unpickler."""
    if not hasattr(torch.serialization, "safe_globals"):
        return contextlib.nullcontext()
    allowed: list[Any] = [np.ndarray, np.dtype]
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    allowed.append(multiarray._reconstruct)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [
            getattr(dtypes, name)
            for name in ("Int32DType", "Int64DType", "UInt32DType", "Float32DType", "Float64DType")
            if hasattr(dtypes, name)
        ]
    return torch.serialization.safe_globals(allowed)
