"""Attribution of remotely hosted LLMs through a log-probability API.

A :class:`RemoteLLMProvider` generates text and returns the log-probabilities of a target
string's tokens after a prompt. :class:`VLLMProvider` speaks the OpenAI-compatible
``/completions`` protocol of vLLM (``prompt_logprobs``) with the standard library only
(no ``openai`` package). :class:`RemoteScoring` plugs a provider into the perturbation
engine in place of a local model, scoring distinct perturbed prompts once each, several
requests in flight at a time.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from whybox.core.chunks import ChunkSize

from .perturbation import LLMPerturbation

__all__ = ["RemoteLLMProvider", "VLLMProvider", "RemoteScoring", "RemoteLLMPerturbation"]


class RemoteLLMProvider(ABC):
    """A remote LLM that generates text and gives log-probabilities of a target string.

    Attributes
    ----------
    api_url : str
    """

    api_url: str

    @abstractmethod
    def generate(self, prompt: str, **gen_args: Any) -> str:
        """The text the model generates after ``prompt``."""

    @abstractmethod
    def get_logprobs(
        self, input_prompt: str, target_str: str, tokenizer: Any = None
    ) -> list[float]:
        """Log-probability of each token of ``target_str`` after ``input_prompt``.

        Returns
        -------
        list of float
            One value per token of ``target_str`` (as ``tokenizer`` splits it).
        """


class VLLMProvider(RemoteLLMProvider):
    """A vLLM (or any OpenAI-compatible) server's ``/completions`` endpoint.

    Parameters
    ----------
    api_url : str
        Base URL of the API, e.g. ``"http://127.0.0.1:8000/v1"``.
    model_name : str, optional
        The served model; default the first one ``GET /models`` lists.

    Raises
    ------
    ValueError
        An empty URL, or a server that lists no models.
    ConnectionError
        The server cannot be reached.

    Notes
    -----
    The bearer token sent is the ``OPENAI_API_KEY`` environment variable, or ``"EMPTY"``
    (vLLM's convention for servers without keys), as the ``openai`` client does. Set
    ``timeout`` (seconds, default 60) on the object to change how long a request waits.
    """

    timeout: float = 60.0

    def __init__(self, api_url: str, model_name: str | None = None) -> None:
        if not isinstance(api_url, str) or not api_url.strip():
            raise ValueError("VLLMProvider: 'api_url' is required (e.g. http://host:8000/v1).")
        self.api_url = api_url.rstrip("/")
        self._api_key = os.getenv("OPENAI_API_KEY", "EMPTY")
        if model_name is None:
            models = self._request("GET", "/models").get("data") or []
            if not models:
                raise ValueError("VLLMProvider: the API lists no models.")
            model_name = models[0]["id"]
        self.model_name = model_name

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {self._api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise ConnectionError(
                f"VLLMProvider: {method} {path} failed with HTTP {error.code}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise ConnectionError(f"VLLMProvider: cannot reach {self.api_url}: {error}") from None

    def _completion(self, **body: Any) -> dict[str, Any]:
        response = self._request("POST", "/completions", {"model": self.model_name, **body})
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices:
            raise KeyError("API response missing expected 'choices' data")
        return choices[0]

    def generate(self, prompt: str, **gen_args: Any) -> str:
        """Generated text; ``max_new_tokens`` (default 25) is sent as ``max_tokens`` and
        ``do_sample`` / unset (``None``) options are dropped."""
        args = {k: v for k, v in gen_args.items() if v is not None and k != "do_sample"}
        args.setdefault("max_tokens", args.pop("max_new_tokens", 25))
        args.pop("max_new_tokens", None)
        return self._completion(prompt=prompt, **args)["text"]

    def get_logprobs(
        self, input_prompt: str, target_str: str, tokenizer: Any = None
    ) -> list[float]:
        """The last ``len(tokenizer.encode(target_str))`` prompt log-probabilities of
        ``input_prompt + target_str`` (one completion request, ``prompt_logprobs=0``)."""
        if tokenizer is None:
            raise ValueError("VLLMProvider.get_logprobs: a tokenizer is required.")
        if not target_str:
            raise ValueError("VLLMProvider.get_logprobs: the target string is empty.")
        n = len(tokenizer.encode(target_str, add_special_tokens=False))
        choice = self._completion(
            prompt=input_prompt + target_str, max_tokens=1, temperature=0.0, prompt_logprobs=0
        )
        entries = choice.get("prompt_logprobs")
        if not entries:
            raise KeyError("API response missing 'prompt_logprobs' data")
        values = []
        for entry in entries[-n:]:
            if not entry:
                raise ValueError("Empty probability data in API response")
            if len(entry) != 1:
                raise ValueError(f"Expected one token per prompt position, got {len(entry)}")
            values.append(float(next(iter(entry.values()))["logprob"]))
        if len(values) != n:
            raise ValueError(f"Not enough logprobs received: expected {n}, got {len(values)}")
        return values


class RemoteScoring:
    """The teacher-forcing interface (:class:`~whybox.llm.scoring.TeacherForcing`) on a
    remote provider: one ``get_logprobs`` request per prompt.

    Parameters
    ----------
    provider : RemoteLLMProvider
    tokenizer : the remote model's tokenizer
    max_workers : int, keyword-only
        Requests in flight at a time (order of results never depends on it).

    Attributes
    ----------
    n_forwards : int
        Requests sent.
    """

    def __init__(self, provider: RemoteLLMProvider, tokenizer: Any, *, max_workers: int = 1):
        self.provider = provider
        self.tokenizer = tokenizer
        self.max_workers = max(1, int(max_workers))
        self.n_forwards = 0

    def prompt_text(self, prompt: Any) -> str:
        """A prompt as the text sent to the server (token ids are decoded)."""
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, Tensor):
            return self.tokenizer.decode(prompt.reshape(-1))
        raise TypeError(
            f"A remote model takes text prompts (or token ids). Got {type(prompt).__name__}."
        )

    def score(
        self,
        prompts: Sequence[Any] | Tensor,
        target: Tensor,
        *,
        contexts: Tensor | None = None,
        alternatives: Tensor | None = None,
    ) -> tuple[Tensor, None]:
        """``(K, T)`` log-probabilities of ``target`` after each prompt."""
        if contexts is not None or alternatives is not None:
            raise ValueError(
                "A remote provider returns the log-probabilities of the target string only: "
                "step-wise attribution and contrasts need a local model."
            )
        texts = [self.prompt_text(p) for p in prompts]
        target_str = self.tokenizer.decode(target)

        def one(text: str) -> list[float]:
            return self.provider.get_logprobs(
                input_prompt=text, target_str=target_str, tokenizer=self.tokenizer
            )

        if self.max_workers > 1 and len(texts) > 1:
            with ThreadPoolExecutor(self.max_workers) as pool:
                results = list(pool.map(one, texts))
        else:
            results = [one(text) for text in texts]
        self.n_forwards += len(texts)
        t = target.numel()
        for values in results:
            if len(values) != t:
                raise ValueError(
                    f"Number of token logprobs from provider ({len(values)}) does not match "
                    f"expected target token length ({t})"
                )
        return torch.tensor(results, dtype=torch.float32).reshape(len(texts), t), None


def remote_target(provider: RemoteLLMProvider, tokenizer: Any, inp: Any, gen_args: Any) -> Tensor:
    """The continuation the provider generates for the unperturbed prompt: ``(T,)``."""
    from .targets import DEFAULT_GEN_ARGS

    prompt = inp.to_model_input()
    if isinstance(prompt, Tensor):
        prompt = tokenizer.decode(prompt.reshape(-1))
    text = provider.generate(prompt, **dict(gen_args or DEFAULT_GEN_ARGS))
    return tokenizer.encode(text, return_tensors="pt", add_special_tokens=False)[0]


class RemoteLLMPerturbation(LLMPerturbation):
    """:class:`~whybox.llm.LLMPerturbation` of a remote model (native API).

    Parameters
    ----------
    provider : RemoteLLMProvider
    tokenizer : the remote model's tokenizer
    method, attr_target : as :class:`~whybox.llm.LLMPerturbation`, keyword-only
    max_workers : int, keyword-only
        Requests in flight at a time (default 4).
    """

    def __init__(
        self,
        provider: RemoteLLMProvider,
        tokenizer: Any,
        *,
        method: str = "feature_ablation",
        attr_target: str = "log_prob",
        max_workers: int = 4,
        chunk_size: ChunkSize = "auto",
    ) -> None:
        super().__init__(
            None, tokenizer, method=method, attr_target=attr_target, chunk_size=chunk_size
        )
        self.provider = provider
        self.max_workers = max_workers

    def _scorer(self) -> RemoteScoring:
        return RemoteScoring(self.provider, self.tokenizer, max_workers=self.max_workers)

    def _target(self, inp: Any, target: Any, gen_args: Any) -> Tensor:
        if target is None:
            return remote_target(self.provider, self.tokenizer, inp, gen_args)
        return super()._target(inp, target, gen_args)
