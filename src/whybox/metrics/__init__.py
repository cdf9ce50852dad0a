"""Is the explanation right? Metrics, sanity checks and ground-truth benchmarks.

Captum 0.9's ``captum.metrics`` with the same signatures and numbers:
:func:`infidelity`, :func:`infidelity_perturb_func_decorator`, :func:`sensitivity_max`.

Native (keyword-only options, ``seed=``, one ``chunk_size`` knob, the model called through
the engine's chunked evaluator on its device; curves come back with what plots them):

* faithfulness -- :func:`deletion`, :func:`insertion`, :func:`aopc`,
  :func:`faithfulness_correlation`, :func:`road` (:func:`noisy_linear_impute`);
  for texts :func:`comprehensiveness`, :func:`sufficiency`, :func:`tau_loo`;
* robustness -- :func:`max_sensitivity`, :func:`avg_sensitivity`, :func:`local_lipschitz`,
  :func:`infidelity_score`;
* complexity -- :func:`sparseness`, :func:`entropy`, :func:`effective_complexity`;
* localisation -- :func:`pointing_game`, :func:`relevance_mass`, :func:`relevance_rank`,
  :func:`top_k_intersection`, :func:`localisation_auc`;
* axioms -- :func:`completeness`, :func:`non_sensitivity`, :func:`input_invariance`;
* randomisation -- :func:`model_parameter_randomisation`, :func:`random_logit`;
* agreement -- :func:`feature_agreement`, :func:`rank_agreement`, :func:`sign_agreement`,
  :func:`signed_rank_agreement`, :func:`rank_correlation`, :func:`pairwise_rank_agreement`;
* ground truth -- tasks with known answers (:data:`TASKS`, :func:`make_task`) and
  :func:`run_benchmark` / :func:`format_table`, saved and drawn with
  :func:`save_benchmark` / :func:`load_benchmark` / :func:`plot_benchmark`.

Note: ``whybox.metrics.infidelity`` is the function (as in Captum); its module is
``whybox.metrics.infidelity`` too, reachable as ``from whybox.metrics.infidelity import
...``.
"""

from .agreement import (
    feature_agreement,
    pairwise_rank_agreement,
    rank_agreement,
    rank_correlation,
    sign_agreement,
    signed_rank_agreement,
)
from .axiomatic import (
    InvarianceResult,
    NonSensitivityResult,
    completeness,
    input_invariance,
    non_sensitivity,
)
from .benchmark import format_table, run_benchmark
from .benchmark_report import load_benchmark, plot_benchmark, save_benchmark
from .complexity import effective_complexity, entropy, sparseness
from .faithfulness import (
    CorrelationResult,
    CurveResult,
    aopc,
    deletion,
    faithfulness_correlation,
    insertion,
    noisy_linear_impute,
    road,
)
from .ground_truth import (
    TASKS,
    GroundTruthTask,
    additive_task,
    boolean_game_task,
    gaussian_clusters_task,
    linear_task,
    make_task,
    planted_keyword_task,
    planted_patch_task,
)
from .infidelity import infidelity, infidelity_perturb_func_decorator, infidelity_score
from .localisation import (
    localisation_auc,
    pointing_game,
    relevance_mass,
    relevance_rank,
    top_k_intersection,
)
from .randomisation import (
    RandomisationResult,
    RandomLogitResult,
    model_parameter_randomisation,
    random_logit,
    randomisable_layers,
)
from .robustness import RobustnessResult, avg_sensitivity, local_lipschitz, max_sensitivity
from .sensitivity import sensitivity_max
from .text import TextFaithfulnessResult, comprehensiveness, sufficiency, tau_loo

__all__ = [
    # Captum 0.9
    "infidelity",
    "infidelity_perturb_func_decorator",
    "sensitivity_max",
    # faithfulness
    "CurveResult",
    "CorrelationResult",
    "deletion",
    "insertion",
    "aopc",
    "faithfulness_correlation",
    "road",
    "noisy_linear_impute",
    "TextFaithfulnessResult",
    "comprehensiveness",
    "sufficiency",
    "tau_loo",
    # robustness
    "RobustnessResult",
    "max_sensitivity",
    "avg_sensitivity",
    "local_lipschitz",
    "infidelity_score",
    # complexity
    "sparseness",
    "entropy",
    "effective_complexity",
    # localisation
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "top_k_intersection",
    "localisation_auc",
    # axioms
    "completeness",
    "non_sensitivity",
    "NonSensitivityResult",
    "input_invariance",
    "InvarianceResult",
    # randomisation
    "RandomisationResult",
    "RandomLogitResult",
    "model_parameter_randomisation",
    "random_logit",
    "randomisable_layers",
    # agreement
    "feature_agreement",
    "rank_agreement",
    "sign_agreement",
    "signed_rank_agreement",
    "rank_correlation",
    "pairwise_rank_agreement",
    # ground truth and benchmark
    "GroundTruthTask",
    "TASKS",
    "make_task",
    "linear_task",
    "additive_task",
    "gaussian_clusters_task",
    "boolean_game_task",
    "planted_patch_task",
    "planted_keyword_task",
    "run_benchmark",
    "format_table",
    "save_benchmark",
    "load_benchmark",
    "plot_benchmark",
]
